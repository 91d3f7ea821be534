//! HTTPS to the emulator with a test CA made by the `openssl` CLI at test time (no keys in the
//! repository): `salesforce.ssl.ca.pem` = the CA → records land; public roots only, or another
//! CA → startup fails with a message that names the certificate problem.

use salesforce_sink_core::config::Config;
use salesforce_sink_core::record::{OperationHeader, Record, Value};
use salesforce_sink_core::wire::outcome::Outcome;
use salesforce_sink_core::SalesforceSink;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl CLI");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a server certificate it signed for localhost/127.0.0.1 (P-256, 2 days).
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    std::fs::write(dir.join("ca.cnf"), "[req]\ndistinguished_name=dn\nx509_extensions=v3\n[dn]\n[v3]\n\
        basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n")
        .unwrap();
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    openssl(dir, &["req", "-x509", "-config", "ca.cnf", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", &key, "-out", &pem, "-days", "2", "-subj", &format!("/CN={name}")]);
    dir.join(pem)
}

fn make_server_cert(dir: &Path, ca: &str) -> (PathBuf, PathBuf) {
    std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
        keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
        .unwrap();
    openssl(dir, &["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
    openssl(dir, &["x509", "-req", "-in", "server.csr", "-CA", &format!("{ca}.pem"), "-CAkey", &format!("{ca}.key"),
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext"]);
    (dir.join("server.pem"), dir.join("server.key"))
}

struct Pki {
    _dir: TempDir,
    ca_pem: String,
    other_ca_pem: String,
    cert: Vec<u8>,
    key: Vec<u8>,
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pki() -> Option<Pki> {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("no openssl CLI: TLS tests skipped");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("sf-tls-{}-{}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = make_ca(&dir, "test-ca");
    let other = make_ca(&dir, "other-ca");
    let (cert, key) = make_server_cert(&dir, "test-ca");
    Some(Pki {
        ca_pem: std::fs::read_to_string(ca).unwrap(),
        other_ca_pem: std::fs::read_to_string(other).unwrap(),
        cert: std::fs::read(cert).unwrap(),
        key: std::fs::read(key).unwrap(),
        _dir: TempDir(dir),
    })
}

fn config(base: &str, extra: &[(&str, &str)]) -> Config {
    let mut map: HashMap<String, String> = [
        ("salesforce.instance.url", base),
        ("salesforce.client.id", "test-client-id"),
        ("salesforce.auth.type", "CLIENT_CREDENTIALS"),
        ("salesforce.client.secret", "test-client-secret"),
        ("salesforce.sobject.type", "Contact"),
        ("salesforce.retry.max.attempts", "0"),
        ("salesforce.retry.initial.backoff.ms", "1"),
        ("salesforce.request.timeout.ms", "5000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        map.insert((*k).into(), (*v).into());
    }
    map.insert("connector.name".into(), format!("tls-{}", rand::random::<u64>()));
    Config::from_map(&map).unwrap()
}

#[test]
fn https_with_a_private_ca() {
    let Some(pki) = pki() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (port, app) = rt
        .block_on(sf_emulator::start_tls("127.0.0.1", 0, false, Some((&pki.cert, &pki.key))))
        .unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let base = format!("https://{host}:{port}");

        // The test CA → startup validation (token, describe) and the write go over TLS.
        let sink = SalesforceSink::with_config(config(&base, &[("salesforce.ssl.ca.pem", &pki.ca_pem)]))
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        let fields = vec![("LastName", Value::String("Tls"))];
        let record = Record {
            topic: "t",
            partition: 0,
            offset: 0,
            key: Value::String("k"),
            value: Value::Map(fields),
            operation_header: OperationHeader::Absent,
            original: None,
        };
        let (outcomes, _) = sink.write_records(&[record]).unwrap();
        assert!(matches!(outcomes[0], Outcome::Written), "{outcomes:?}");
        sink.close();

        // A PEM as it arrives from a .properties file, newlines escaped, works too.
        let escaped = pki.ca_pem.replace('\n', "\\n");
        SalesforceSink::with_config(config(&base, &[("salesforce.ssl.ca.pem", &escaped)])).unwrap().close();

        // Public roots only, or another CA: a clear error at startup, naming the certificate.
        for (what, extra) in [("no CA", vec![]), ("wrong CA", vec![("salesforce.ssl.ca.pem", pki.other_ca_pem.as_str())])] {
            let err = match SalesforceSink::with_config(config(&base, &extra)) {
                Ok(_) => panic!("{host}, {what}: the server certificate must not be trusted"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains("certificate") && err.contains("UnknownIssuer"), "{host}, {what}: {err}");
            assert!(!err.contains("test-client-secret"), "{err}");
        }
    }
    // One Collections write per host: the untrusted connections never got as far as HTTP.
    let records = app.lock().log.iter().filter(|e| e.path.contains("/composite/sobjects")).count();
    assert_eq!(records, 2);
}

#[test]
fn a_ca_setting_without_a_certificate_is_refused() {
    let cfg = config("https://127.0.0.1:1", &[("salesforce.ssl.ca.pem", "not a pem")]);
    let err = SalesforceSink::with_config(cfg).err().expect("must fail").to_string();
    assert!(err.contains("salesforce.ssl.ca.pem"), "{err}");
}
