use std::io::Cursor;

use image::codecs::gif::GifDecoder;
use image::{AnimationDecoder, Delay, Frame, ImageBuffer, Rgb, RgbImage, Rgba, RgbaImage};

use super::super::tests::{expect_invalid, expect_unsupported, upload};
use super::super::{ArchiveLimits, FileKind, Inspected, Refusal, inspect};
use super::*;

fn gradient(width: u32, height: u32) -> RgbImage {
    ImageBuffer::from_fn(width, height, |x, y| Rgb([(x * 16) as u8, (y * 16) as u8, 128]))
}

fn encoded(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

/// Inspects `bytes` and returns the result with the rewritten file's bytes, read before the
/// directory holding it goes away.
fn inspect_picture(declared_name: &str, bytes: &[u8]) -> (Inspected, Vec<u8>) {
    let (directory, path) = upload(bytes);
    let inspected = inspect(&path, declared_name, &ArchiveLimits::default()).unwrap();
    let rewritten = inspected.rewritten.clone().expect("pictures are always rewritten");
    assert_eq!(rewritten.parent(), Some(directory.path()));
    assert_ne!(rewritten, path);
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the upload itself is left alone");
    let cleaned = std::fs::read(&rewritten).unwrap();
    (inspected, cleaned)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// The CRC that closes every PNG chunk (over its type and data).
fn png_crc(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend(kind);
    chunk.extend(data);
    let mut covered = kind.to_vec();
    covered.extend(data);
    chunk.extend(png_crc(&covered).to_be_bytes());
    chunk
}

/// A JPEG with an APP1 EXIF segment right after its start marker: a little-endian TIFF block
/// holding one IFD (the orientation) and a GPS note after it.
fn jpeg_with_exif(image: &DynamicImage, orientation: u16) -> Vec<u8> {
    let plain = encoded(image, ImageFormat::Jpeg);
    let mut exif = b"Exif\0\0II*\0\x08\0\0\0".to_vec();
    exif.extend(1u16.to_le_bytes());
    exif.extend(0x0112u16.to_le_bytes());
    exif.extend(3u16.to_le_bytes());
    exif.extend(1u32.to_le_bytes());
    exif.extend(orientation.to_le_bytes());
    exif.extend([0, 0, 0, 0, 0, 0]);
    exif.extend(b"GPSLatitude 48.8584 N GPSLongitude 2.2945 E");
    let mut segment = b"\xFF\xE1".to_vec();
    segment.extend((exif.len() as u16 + 2).to_be_bytes());
    segment.extend(exif);
    let mut jpeg = plain[..2].to_vec();
    jpeg.extend(segment);
    jpeg.extend(&plain[2..]);
    jpeg
}

#[test]
fn exif_and_gps_are_gone_from_a_jpeg() {
    let image = DynamicImage::ImageRgb8(gradient(16, 16));
    let jpeg = jpeg_with_exif(&image, 1);
    assert!(contains(&jpeg, b"GPSLatitude"));

    let (inspected, cleaned) = inspect_picture("holiday.JPG", &jpeg);
    assert_eq!(inspected.kind, FileKind::Image);
    assert_eq!(inspected.content_type, "image/jpeg");
    assert_eq!(inspected.filename, "holiday.JPG");
    assert!(!contains(&cleaned, b"Exif"));
    assert!(!contains(&cleaned, b"GPS"));
    let decoded = image::load_from_memory_with_format(&cleaned, ImageFormat::Jpeg).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (16, 16));
}

#[test]
fn the_exif_orientation_is_applied_before_it_is_dropped() {
    // 6 means "rotate 90° clockwise to display": a wide photo taken upright.
    let image = DynamicImage::ImageRgb8(gradient(16, 8));
    let (_, cleaned) = inspect_picture("phone.jpeg", &jpeg_with_exif(&image, 6));
    let decoded = image::load_from_memory(&cleaned).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (8, 16));
}

#[test]
fn text_chunks_are_gone_from_a_png() {
    let image = DynamicImage::ImageRgba8(RgbaImage::from_pixel(4, 4, Rgba([1, 2, 3, 200])));
    let plain = encoded(&image, ImageFormat::Png);
    // The IHDR chunk ends 33 bytes in; ancillary chunks may follow it.
    let mut png = plain[..33].to_vec();
    png.extend(png_chunk(b"tEXt", b"Comment\0taken at 48.8584 N, 2.2945 E"));
    png.extend(png_chunk(b"eXIf", b"MM\0*\0\0\0\x08\0\0\0\0\0\0GPS"));
    png.extend(&plain[33..]);
    assert!(image::load_from_memory(&png).is_ok());

    let (inspected, cleaned) = inspect_picture("drawing.png", &png);
    assert_eq!(inspected.content_type, "image/png");
    assert!(!contains(&cleaned, b"tEXt"));
    assert!(!contains(&cleaned, b"eXIf"));
    assert!(!contains(&cleaned, b"48.8584"));
    let decoded = image::load_from_memory_with_format(&cleaned, ImageFormat::Png).unwrap();
    assert_eq!(decoded, image);
}

#[test]
fn an_animated_gif_keeps_its_first_frame() {
    let frames = [Rgba([255, 0, 0, 255]), Rgba([0, 0, 255, 255])]
        .map(|colour| Frame::from_parts(RgbaImage::from_pixel(6, 6, colour), 0, 0, Delay::from_numer_denom_ms(100, 1)));
    let mut gif = Vec::new();
    GifEncoder::new(&mut gif).encode_frames(frames).unwrap();

    let (inspected, cleaned) = inspect_picture("dance.gif", &gif);
    assert_eq!(inspected.content_type, "image/gif");
    let frames = GifDecoder::new(Cursor::new(&cleaned)).unwrap().into_frames();
    let frames = frames.collect_frames().unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].buffer().get_pixel(0, 0), &Rgba([255, 0, 0, 255]));
}

#[test]
fn a_webp_is_rewritten_as_webp() {
    let image = DynamicImage::ImageRgb8(gradient(8, 8));
    let (inspected, cleaned) = inspect_picture("sprite.webp", &encoded(&image, ImageFormat::WebP));
    assert_eq!(inspected.content_type, "image/webp");
    let decoded = image::load_from_memory_with_format(&cleaned, ImageFormat::WebP).unwrap();
    assert_eq!(decoded.to_rgb8(), image.to_rgb8());
}

#[test]
fn a_picture_under_the_wrong_extension_is_unsupported() {
    let png = encoded(&DynamicImage::ImageRgb8(gradient(4, 4)), ImageFormat::Png);
    let reason = expect_unsupported("photo.jpg", &png);
    assert!(reason.contains("looks like a PNG picture"), "{reason}");
    assert!(reason.contains("a JPEG photo"), "{reason}");

    let reason = expect_unsupported("photo.png", b"hello, I am text");
    assert!(reason.contains("not really a PNG picture"), "{reason}");
}

#[test]
fn a_damaged_picture_is_invalid() {
    let png = encoded(&DynamicImage::ImageRgb8(gradient(64, 64)), ImageFormat::Png);
    let reason = expect_invalid("cut.png", &png[..png.len() / 2]);
    assert!(reason.contains("damaged"), "{reason}");
    let reason = expect_invalid("broken.jpg", b"\xFF\xD8\xFF\xE0 not really a jpeg at all");
    assert!(reason.contains("damaged"), "{reason}");
}

#[test]
fn a_picture_over_the_limits_is_invalid() {
    // Tiny on disk, but 10,000 pixels wide.
    let wide = DynamicImage::ImageLuma8(ImageBuffer::new(MAX_SIDE + 1808, 1));
    let reason = expect_invalid("wide.png", &encoded(&wide, ImageFormat::Png));
    assert!(reason.contains("too big"), "{reason}");

    // Within both sides, but 8192 × 8192 × 8 bytes of 16-bit RGBA is twice the budget. Only the
    // header is needed to refuse it, so the rest of the file is left out.
    let mut header = b"\x89PNG\r\n\x1A\n".to_vec();
    let mut ihdr = MAX_SIDE.to_be_bytes().to_vec();
    ihdr.extend(MAX_SIDE.to_be_bytes());
    ihdr.extend([16, 6, 0, 0, 0]);
    header.extend(png_chunk(b"IHDR", &ihdr));
    header.extend(png_chunk(b"IDAT", b""));
    let reason = expect_invalid("deep.png", &header);
    assert!(reason.contains("too big"), "{reason}");
}

#[test]
fn nothing_is_left_behind_when_a_picture_is_refused() {
    let (directory, path) = upload(b"\xFF\xD8\xFF\xE0 not really a jpeg at all");
    let outcome = inspect(&path, "broken.jpg", &ArchiveLimits::default());
    assert!(matches!(outcome, Err(Refusal::Invalid { .. })));
    let entries = std::fs::read_dir(directory.path()).unwrap().count();
    assert_eq!(entries, 1, "only the upload remains");
}
