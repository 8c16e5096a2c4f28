//! Upload and download throughput and the process's peak memory while a 100 MB file goes
//! through, on the local store and on SeaweedFS. A measurement, not a check of speed: run it
//! with `cargo test --test api throughput -- --ignored --nocapture` (add `--release` for an
//! optimised build).

use std::time::Instant;

use reqwest::{Method, StatusCode};
use tokio_util::io::ReaderStream;

use super::project;
use crate::support::{TestApp, expect, s};

const SIZE: usize = 100_000_000;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
}

async fn measure(app: &TestApp, store: &str) {
    let w = project(app).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.txt");
    let line = "print('a line of a rather long program, over and over again')\n";
    // Written a block at a time, so the test's own memory does not hide the server's.
    {
        use std::io::Write;
        let block = line.repeat(16_384);
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut left = SIZE;
        while left > 0 {
            let n = left.min(block.len());
            out.write_all(&block.as_bytes()[..n]).unwrap();
            left -= n;
        }
    }
    let before = peak_rss_mib();
    let file = tokio::fs::File::open(&path).await.unwrap();
    let part =
        reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(ReaderStream::new(file)), SIZE as u64)
            .file_name("big.txt")
            .mime_str("text/plain")
            .unwrap();
    let started = Instant::now();
    let res = app
        .req(Method::POST, &format!("/lessons/{}/submissions", w.lesson_id), w.student.auth())
        .multipart(reqwest::multipart::Form::new().part("files", part))
        .send()
        .await
        .unwrap();
    let sub = expect(res, StatusCode::CREATED).await;
    let up = started.elapsed().as_secs_f64();
    let after_upload = peak_rss_mib();
    let started = Instant::now();
    let mut res = app.get(&format!("/files/{}", s(&sub["files"][0]["id"])), w.student.auth()).await;
    let mut got = 0usize;
    while let Some(chunk) = res.chunk().await.unwrap() {
        got += chunk.len();
    }
    assert_eq!(got, SIZE);
    let down = started.elapsed().as_secs_f64();
    let mb = SIZE as f64 / 1e6;
    println!(
        "{store}: upload {:.0} MB/s ({up:.2} s), download {:.0} MB/s ({down:.2} s); peak RSS {before:.0} MiB before, {after_upload:.0} MiB after the upload (+{:.0} MiB)",
        mb / up,
        mb / down,
        after_upload - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it by name with --ignored --nocapture"]
async fn throughput_and_peak_memory_of_a_100_mb_upload() {
    measure(&TestApp::spawn().await, "local").await;
    let s3 = crate::support::s3::S3Scratch::new().await;
    let env = s3.env();
    let app = TestApp::spawn_with(move |e| e.extend(env)).await.keeping(s3);
    measure(&app, "S3 (SeaweedFS)").await;
}
