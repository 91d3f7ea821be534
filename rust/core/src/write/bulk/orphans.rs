//! Jobs an earlier owner of the partitions left running (SPEC §7): after a crash (kill -9, a lost
//! worker) nothing aborted them, and when Salesforce runs them they overwrite whatever was written
//! since. Before the first write of an SObject in BULK or AUTO, the ingest jobs of the same user
//! and SObject that are still `Open` are aborted (an open job writes nothing until closed), and
//! those `UploadComplete` or `InProgress` are waited for, at most `salesforce.bulk.job.timeout.ms`.
//!
//! Other tasks of the connector write as the same user: a job of a running sibling task found
//! here is waited for as well (or, still `Open`, aborted: its task sends those records again).

use super::JobInfo;
use crate::write::Writer;
use reqwest::Method;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Pages of the job list read at most (Salesforce keeps jobs for 7 days, 1,000 a page).
const MAX_PAGES: usize = 100;
/// Tries of the job list before writing goes on without it.
const LIST_TRIES: u32 = 3;

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobList {
    #[serde(default)]
    records: Vec<ListedJob>,
    #[serde(default)]
    next_records_url: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListedJob {
    id: String,
    #[serde(default)]
    object: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    created_by_id: String,
}

/// Settles the jobs an earlier owner left for `sobject`, once per SObject and task; returns at
/// once after the first time. Writes of the SObject wait meanwhile.
pub(in crate::write) async fn settle(w: &Writer, sobject: &str, abandoned: &AtomicBool) {
    let key = sobject.to_ascii_lowercase();
    let mut checked = w.orphans_checked.lock().await;
    if checked.contains(&key) {
        return;
    }
    let user = match w.client.tokens().token().await {
        Ok(token) => token.user_id,
        // The write itself meets the same failure and reports it.
        Err(_) => return,
    };
    let Some(user) = user else {
        w.client.logs().warn(format!(
            "the access token names no user (no identity URL 'id'): Bulk jobs an earlier run left on {sobject} are not looked for"
        ));
        checked.insert(key);
        return;
    };
    let mut listed = None;
    for attempt in 1..=LIST_TRIES {
        match running_jobs(w, sobject, &user).await {
            Ok(jobs) => {
                listed = Some(jobs);
                break;
            }
            Err(e) if attempt == LIST_TRIES => {
                w.client.logs().warn(format!(
                    "cannot list Bulk jobs ({e}); writing {sobject} without waiting for jobs an earlier run may have left"
                ));
            }
            Err(_) => tokio::time::sleep(w.cfg.retry.backoff(attempt).max(Duration::from_millis(100))).await,
        }
    }
    let jobs = listed.unwrap_or_default();
    if !jobs.is_empty() && !wait_for(w, sobject, jobs, abandoned).await {
        return; // the records were revoked: the next write of the SObject looks again
    }
    checked.insert(key);
}

/// The user's jobs of `sobject` that are open or processing, except this task's own.
async fn running_jobs(w: &Writer, sobject: &str, user: &str) -> Result<Vec<ListedJob>, String> {
    let mut path = "/jobs/ingest".to_owned();
    let mut running = Vec::new();
    for _ in 0..MAX_PAGES {
        let answer = w.client.send(Method::GET, &path, None).await.map_err(|e| e.to_string())?;
        let page: JobList = serde_json::from_slice(&answer.body).map_err(|e| format!("the job list is not a list of jobs: {e}"))?;
        let own = w.open_job_ids();
        running.extend(page.records.into_iter().filter(|j| {
            matches!(j.state.as_str(), "Open" | "UploadComplete" | "InProgress")
                && j.object.eq_ignore_ascii_case(sobject)
                && same_id(&j.created_by_id, user)
                && !own.contains(&j.id)
        }));
        match page.next_records_url.as_deref().and_then(|url| w.client.relative_data_path(url)) {
            Some(next) => path = next,
            None => break,
        }
    }
    Ok(running)
}

/// Salesforce Ids compare by their first 15 characters (the 18-character form adds a checksum).
fn same_id(a: &str, b: &str) -> bool {
    a.len() >= 15 && b.len() >= 15 && a[..15] == b[..15]
}

/// Aborts the open jobs and waits for the others to finish; false when the records were abandoned
/// meanwhile.
async fn wait_for(w: &Writer, sobject: &str, jobs: Vec<ListedJob>, abandoned: &AtomicBool) -> bool {
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    w.client.logs().info(format!(
        "{} Bulk job(s) of {sobject} left by an earlier run of this user are open or running ({}): aborting the open \
         ones and waiting for the others (at most salesforce.bulk.job.timeout.ms={} ms) before writing {sobject}",
        jobs.len(),
        ids.join(", "),
        w.cfg.bulk.job_timeout.as_millis()
    ));
    let mut waiting: Vec<String> = Vec::new();
    for job in jobs {
        if job.state == "Open" {
            let body = serde_json::json!({ "state": "Aborted" }).to_string();
            let _ = w.client.send(Method::PATCH, &format!("/jobs/ingest/{}", job.id), Some(body.as_bytes())).await;
        } else {
            waiting.push(job.id);
        }
    }
    let started = tokio::time::Instant::now();
    let mut interval = w.cfg.bulk.poll_interval;
    while !waiting.is_empty() {
        if started.elapsed() >= w.cfg.bulk.job_timeout {
            w.client.logs().warn(format!(
                "Bulk job(s) {} of {sobject} left by an earlier run did not finish within salesforce.bulk.job.timeout.ms; \
                 writing {sobject} now: when they finish they may overwrite newer values",
                waiting.join(", ")
            ));
            return true;
        }
        let until = tokio::time::Instant::now() + interval;
        while tokio::time::Instant::now() < until {
            if abandoned.load(Ordering::SeqCst) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100).min(until - tokio::time::Instant::now())).await;
        }
        interval = (interval * 2).min(crate::config::BulkConfig::MAX_POLL_INTERVAL);
        let mut still = Vec::new();
        for id in waiting {
            match w.client.send(Method::GET, &format!("/jobs/ingest/{id}"), None).await {
                Ok(answer) => match serde_json::from_slice::<JobInfo>(&answer.body) {
                    Ok(info) if info.finished() => {}
                    _ => still.push(id),
                },
                Err(e) if e.status() == Some(404) => {}
                Err(_) => still.push(id),
            }
        }
        waiting = still;
    }
    w.client.logs().info(format!("the Bulk jobs of {sobject} left by an earlier run are over; writing {sobject}"));
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_compare_by_their_15_character_form() {
        assert!(super::same_id("0058d000002EmuLAAS", "0058d000002EmuL"));
        assert!(!super::same_id("0058d000002EmuM", "0058d000002EmuL"));
        assert!(!super::same_id("", ""));
    }
}
