//! The bytes decide: what each kind of hostile or odd file gets, and that an image's metadata
//! (a child's photo carries where it was taken) never leaves the server.

use std::io::Write;

use reqwest::{Method, StatusCode};

use super::{file, form, nothing_kept, project, spawn, submit, zip_of};
use crate::support::{TestApp, User, error_fields, expect, problem, s};

/// A multipart body written by hand, for names no well-behaved client sends.
async fn raw_upload(app: &TestApp, u: &User, lesson_id: &str, filename: &str, bytes: &[u8]) -> reqwest::Response {
    let mut body = Vec::new();
    write!(body, "--xyz\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").unwrap();
    body.extend_from_slice(bytes);
    body.extend_from_slice(b"\r\n--xyz--\r\n");
    app.req(Method::POST, &format!("/lessons/{lesson_id}/submissions"), u.auth())
        .header("content-type", "multipart/form-data; boundary=xyz")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn zip_bomb() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    z.start_file("zeros.txt", zip::write::SimpleFileOptions::default()).unwrap();
    let block = vec![0u8; 1 << 20];
    for _ in 0..600 {
        z.write_all(&block).unwrap();
    }
    z.finish().unwrap();
    out.into_inner()
}

/// A small JPEG carrying an EXIF segment with GPS coordinates, as a phone writes it.
fn photo_with_location() -> Vec<u8> {
    let img = image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8 * 16, y as u8 * 16, 128]));
    let mut jpeg = std::io::Cursor::new(Vec::new());
    img.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
    let jpeg = jpeg.into_inner();
    let payload = b"Exif\0\0GPSLatitude=52.5200N;GPSLongitude=13.4050E;home";
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_files_are_refused_by_what_they_are() {
    let app = spawn(|_| {}).await;
    let w = project(&app).await;
    let up = |name: &str, bytes: Vec<u8>, ct: &str| {
        submit(&app, &w.student, &w.lesson_id, form(vec![file(name, bytes, ct)], ""))
    };

    let empty = problem(up("empty.py", vec![], "text/plain").await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&empty), vec!["files[0]"]);
    let mut elf = b"\x7fELF\x02\x01\x01\0".to_vec();
    elf.extend(vec![0u8; 200]);
    problem(up("homework.py", elf, "text/x-python").await, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let mut pe = b"MZ\x90\0\x03\0\0\0".to_vec();
    pe.extend(vec![0u8; 200]);
    problem(up("notes.txt", pe.clone(), "text/plain").await, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    problem(up("game.exe", pe, "application/octet-stream").await, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    // A declared type that lies does not help: the name says PNG, the bytes are text.
    problem(up("photo.png", b"just text".to_vec(), "image/png").await, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let nul =
        problem(up("code.py", b"print(1)\0\0".to_vec(), "text/plain").await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&nul), vec!["files[0]"]);
    let bomb = problem(up("project.zip", zip_bomb(), "application/zip").await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(bomb["errors"][0]["message"].as_str().unwrap().contains("project.zip"), "{bomb}");
    let traversal = zip_of(&[("../../etc/passwd", b"root:x:0:0")]);
    problem(up("escape.zip", traversal, "application/zip").await, StatusCode::UNPROCESSABLE_ENTITY).await;
    let nested = zip_of(&[("inner.zip", &zip_of(&[("a.txt", b"a")]))]);
    problem(up("nested.zip", nested, "application/zip").await, StatusCode::UNPROCESSABLE_ENTITY).await;

    // Names a well-behaved client never sends.
    for name in ["../../etc/cron.d/x.py", "a\u{202E}yp.exe", "line\\nbreak.py", "..", ""] {
        let res = raw_upload(&app, &w.student, &w.lesson_id, name, b"print(1)").await;
        let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&p), vec!["files[0]"], "{name:?}: {p}");
    }
    // Five hundred tiny files are more than a hand-in may hold.
    let many = (0..500).map(|i| file(&format!("f{i}.py"), "x = 1", "text/plain")).collect();
    problem(submit(&app, &w.student, &w.lesson_id, form(many, "")).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    nothing_kept(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_kinds_are_typed_by_their_bytes_and_photos_lose_their_location() {
    let app = spawn(|_| {}).await;
    let w = project(&app).await;
    let photo = photo_with_location();
    assert!(photo.windows(11).any(|w| w == b"GPSLatitude"));
    let notebook = br#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#.to_vec();
    let archive = zip_of(&[("game/main.py", b"print('hi')"), ("game/README.md", b"# Game")]);
    let files = vec![
        file("me.jpg", photo, "image/jpeg"),
        file("analysis.ipynb", notebook, "application/json"),
        file("game.zip", archive, "application/zip"),
        file("Zeichnung für Oma.txt", "Hallo Oma", "text/plain"),
    ];
    let sub = expect(submit(&app, &w.student, &w.lesson_id, form(files, "all of it")).await, StatusCode::CREATED).await;
    let types: Vec<_> = sub["files"].as_array().unwrap().iter().map(|f| s(&f["content_type"])).collect();
    assert_eq!(types, vec!["image/jpeg", "application/x-ipynb+json", "application/zip", "text/plain; charset=utf-8"]);
    let photo_id = s(&sub["files"][0]["id"]);
    let res = app.get(&format!("/files/{photo_id}"), w.student.auth()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let served = res.bytes().await.unwrap();
    assert!(!served.windows(3).any(|w| w == b"GPS"), "no location left in the photo");
    assert!(!served.windows(4).any(|w| w == b"Exif"), "no EXIF left in the photo");
    image::load_from_memory(&served).expect("still a picture");
    assert_eq!(sub["files"][0]["size"], served.len(), "the size is of what is served");
    let res = app.get(&format!("/files/{}", s(&sub["files"][3]["id"])), w.student.auth()).await;
    assert_eq!(
        res.headers()["content-disposition"],
        "attachment; filename=\"Zeichnung f_r Oma.txt\"; filename*=UTF-8''Zeichnung%20f%C3%BCr%20Oma.txt"
    );
}
