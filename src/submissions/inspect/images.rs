//! Pictures are decoded and encoded again, so only pixels survive: EXIF (with its GPS
//! position), XMP, comments and text chunks are never written back. Children's photos often
//! carry where they were taken.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use image::codecs::gif::GifEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::metadata::Orientation;
use image::{ColorType, DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};

use super::Refusal;
use super::sniff::Head;

/// Larger than any screen or school assignment needs, and it bounds the work of a decode.
const MAX_SIDE: u32 = 8192;
/// The decoded pixels of an 8192 × 8192 RGBA picture; a file declaring more is a bomb.
const MAX_DECODED_BYTES: u64 = 256 * 1024 * 1024;
/// High enough that a second generation is hard to tell from the upload.
const JPEG_QUALITY: u8 = 90;
/// The gif crate's own recommended trade-off between palette quality and time.
const GIF_SPEED: i32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Picture {
    Png,
    Jpeg,
    Gif,
    WebP,
}

impl Picture {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Gif => "image/gif",
            Self::WebP => "image/webp",
        }
    }

    fn format(self) -> ImageFormat {
        match self {
            Self::Png => ImageFormat::Png,
            Self::Jpeg => ImageFormat::Jpeg,
            Self::Gif => ImageFormat::Gif,
            Self::WebP => ImageFormat::WebP,
        }
    }

    /// The extension `infer` reports for this format.
    fn sniffed_extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Gif => "gif",
            Self::WebP => "webp",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Png => "a PNG picture",
            Self::Jpeg => "a JPEG photo",
            Self::Gif => "a GIF picture",
            Self::WebP => "a WebP picture",
        }
    }
}

/// The bytes must be the very format the extension names: a PNG called `.jpg` is refused
/// rather than quietly fixed, because the name is what the reviewer will download.
pub fn expect_format(filename: &str, head: &Head, expected: Picture) -> Result<Picture, Refusal> {
    if head.sniffed_extension() == Some(expected.sniffed_extension()) {
        Ok(expected)
    } else {
        Err(super::mismatch(filename, head, expected.description()))
    }
}

/// Writes the cleaned picture beside the upload and returns its path.
///
/// The EXIF orientation is applied to the pixels before the metadata is dropped, so a phone
/// photo does not end up on its side. An animated GIF keeps only its first frame: every frame
/// would multiply the decode budget, and a still is enough for a reviewer.
pub fn reencode(path: &Path, filename: &str, picture: Picture) -> Result<PathBuf, Refusal> {
    let image = decode(path, filename, picture)?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut output = tempfile::Builder::new()
        .prefix(".cleaned-")
        .tempfile_in(directory)
        .map_err(|error| Refusal::io(filename, error))?;
    let mut writer = BufWriter::new(output.as_file_mut());
    encode(&image, picture, &mut writer).map_err(|error| Refusal::io(filename, error))?;
    writer.into_inner().map_err(|error| Refusal::io(filename, error.into_error()))?;
    // Until here a failure deletes the partial file; from here it is the caller's to delete.
    let (_, kept) = output.keep().map_err(|error| Refusal::io(filename, error.error))?;
    Ok(kept)
}

fn decode(path: &Path, filename: &str, picture: Picture) -> Result<DynamicImage, Refusal> {
    let file = File::open(path).map_err(|error| Refusal::io(filename, error))?;
    let mut reader = ImageReader::with_format(BufReader::new(file), picture.format());
    reader.limits(decode_limits());
    let refuse = |error| decode_refusal(filename, error);
    let mut decoder = reader.into_decoder().map_err(refuse)?;
    // The reader only checks the allocation when it decodes by itself; going through the
    // decoder (to read the orientation) leaves that check to us.
    if decoder.total_bytes() > MAX_DECODED_BYTES {
        return Err(too_big(filename));
    }
    // A broken EXIF block is no reason to refuse the picture: it is about to be dropped.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(refuse)?;
    image.apply_orientation(orientation);
    Ok(image)
}

fn decode_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    limits
}

fn decode_refusal(filename: &str, error: ImageError) -> Refusal {
    match error {
        ImageError::Limits(_) => too_big(filename),
        // Reading a local file fails for real only in ways that are not about its content.
        ImageError::IoError(error)
            if !matches!(error.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData) =>
        {
            Refusal::io(filename, error)
        }
        _ => Refusal::invalid(filename, "This picture is damaged or incomplete, so we cannot open it."),
    }
}

fn too_big(filename: &str) -> Refusal {
    Refusal::invalid(filename, format!("This picture is too big: it can be at most {MAX_SIDE} × {MAX_SIDE} pixels."))
}

/// Each encoder writes pixels and the few header fields it needs, nothing else. Colour types
/// an encoder cannot take are converted to the nearest one it can.
fn encode(image: &DynamicImage, picture: Picture, writer: &mut impl Write) -> io::Result<()> {
    let outcome = match picture {
        Picture::Png => image.write_with_encoder(PngEncoder::new(writer)),
        Picture::Jpeg => {
            let encoder = JpegEncoder::new_with_quality(writer, JPEG_QUALITY);
            match image.color() {
                ColorType::L8 | ColorType::Rgb8 => image.write_with_encoder(encoder),
                _ => DynamicImage::ImageRgb8(image.to_rgb8()).write_with_encoder(encoder),
            }
        }
        Picture::Gif => {
            let encoder = GifEncoder::new_with_speed(writer, GIF_SPEED);
            DynamicImage::ImageRgba8(image.to_rgba8()).write_with_encoder(encoder)
        }
        Picture::WebP => {
            // The only WebP encoder here is lossless: larger files, but nothing is lost twice.
            let encoder = WebPEncoder::new_lossless(writer);
            match image.color() {
                ColorType::L8 | ColorType::La8 | ColorType::Rgb8 | ColorType::Rgba8 => {
                    image.write_with_encoder(encoder)
                }
                _ => DynamicImage::ImageRgba8(image.to_rgba8()).write_with_encoder(encoder),
            }
        }
    };
    outcome.map_err(|error| match error {
        ImageError::IoError(error) => error,
        other => io::Error::other(other),
    })
}

#[cfg(test)]
#[path = "images_tests.rs"]
mod tests;
