//! `sf-emulator [--port N] [--port-file PATH] [--host 127.0.0.1] [--verbose] [--tls-cert PEM --tls-key PEM]`

use std::path::PathBuf;
use std::process::exit;

struct Args {
    host: String,
    port: u16,
    port_file: Option<PathBuf>,
    verbose: bool,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

const USAGE: &str = "usage: sf-emulator [--port N] [--port-file PATH] [--host ADDR] [--verbose]\n\
  --port N          port to listen on (0 = any free port; default 0)\n\
  --port-file PATH  write the bound port there once listening (atomically, via rename)\n\
  --host ADDR       address to bind (default 127.0.0.1)\n\
  --verbose         log one line per request (method, path, status) to stdout\n\
  --tls-cert PEM    serve HTTPS with this certificate chain (PEM file; needs --tls-key)\n\
  --tls-key PEM     the certificate's private key (PEM file: PKCS#8, PKCS#1 or SEC1)";

fn parse_args() -> Result<Args, String> {
    let mut a = Args { host: "127.0.0.1".into(), port: 0, port_file: None, verbose: false, tls_cert: None, tls_key: None };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        // Accept both `--port 8080` and `--port=8080`.
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |n: &str| inline.clone().or_else(|| it.next()).ok_or(format!("{n} needs a value"));
        match name.as_str() {
            "--port" => a.port = value("--port")?.parse().map_err(|_| "--port must be a number 0-65535".to_string())?,
            "--port-file" => a.port_file = Some(PathBuf::from(value("--port-file")?)),
            "--host" => a.host = value("--host")?,
            "--verbose" | "-v" => a.verbose = true,
            "--tls-cert" => a.tls_cert = Some(PathBuf::from(value("--tls-cert")?)),
            "--tls-key" => a.tls_key = Some(PathBuf::from(value("--tls-key")?)),
            "--help" | "-h" => {
                println!("{USAGE}");
                exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.tls_cert.is_some() != a.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    Ok(a)
}

/// Writes the port to a temporary file beside the target, then renames it into place, so a
/// reader polling for the file never sees it half-written.
fn write_port_file(path: &PathBuf, port: u16) -> std::io::Result<()> {
    let mut tmp = path.clone().into_os_string();
    tmp.push(format!(".tmp.{}", std::process::id()));
    std::fs::write(&tmp, format!("{port}\n"))?;
    std::fs::rename(&tmp, path)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sf-emulator: {e}\n{USAGE}");
            exit(2);
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => match (std::fs::read(c), std::fs::read(k)) {
            (Ok(c), Ok(k)) => Some((c, k)),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("sf-emulator: cannot read --tls-cert/--tls-key: {e}");
                exit(2);
            }
        },
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let pems = tls.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));
        let (port, _app) = match sf_emulator::start_tls(&args.host, args.port, args.verbose, pems).await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("sf-emulator: cannot listen on {}:{}: {e}", args.host, args.port);
                exit(1);
            }
        };
        if let Some(pf) = &args.port_file {
            if let Err(e) = write_port_file(pf, port) {
                eprintln!("sf-emulator: cannot write port file {}: {e}", pf.display());
                exit(1);
            }
        }
        eprintln!("sf-emulator listening on {scheme}://{}:{port}", args.host);
        std::future::pending::<()>().await;
    });
}
