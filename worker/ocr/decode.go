package ocr

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
)

// imageError is a problem with the image a client sent. Every one matches ErrInvalidImage.
type imageError struct{ msg string }

func (e *imageError) Error() string        { return e.msg }
func (e *imageError) Is(target error) bool { return target == ErrInvalidImage }

var (
	// ErrInvalidImage matches every error Decode returns (the three below). Their text is
	// safe to show a client.
	ErrInvalidImage = errors.New("ocr: invalid image")

	ErrFormat   error = &imageError{"ocr: unsupported image format"} // not PNG or JPEG
	ErrTooLarge error = &imageError{"ocr: image too large"}          // more pixels than allowed
	ErrCorrupt  error = &imageError{"ocr: corrupt image"}            // PNG or JPEG that does not decode
)

// Formats Decode accepts, as image.Decode names them.
const (
	FormatPNG  = "png"
	FormatJPEG = "jpeg"
)

// magics tells formats apart by their first bytes, so refusals can say what was sent.
var magics = []struct{ format, magic string }{
	{FormatPNG, "\x89PNG\r\n\x1a\n"},
	{FormatJPEG, "\xff\xd8\xff"},
	{"gif", "GIF8"},
	{"webp", "RIFF????WEBP"},
	{"bmp", "BM"},
	{"tiff", "II*\x00"},
	{"tiff", "MM\x00*"},
	{"pdf", "%PDF-"},
	{"ico", "\x00\x00\x01\x00"},
}

func sniff(data []byte) string {
	for _, m := range magics {
		if len(data) < len(m.magic) {
			continue
		}
		match := true
		for i := range len(m.magic) {
			if m.magic[i] != '?' && data[i] != m.magic[i] {
				match = false
				break
			}
		}
		if match {
			return m.format
		}
	}
	return ""
}

// Decode decodes a PNG or JPEG image and returns it with its format name ("png" or "jpeg",
// as image.Decode names them). It reads the header first and refuses, before decoding any
// pixels, images with more than maxPixels pixels (maxPixels ≤ 0: no limit). It does not use
// the image package's format registry, so formats other packages register stay refused.
// Errors match ErrInvalidImage and one of ErrFormat, ErrTooLarge or ErrCorrupt.
func Decode(data []byte, maxPixels int) (image.Image, string, error) {
	format := sniff(data)
	var decodeConfig func([]byte) (image.Config, error)
	var decode func([]byte) (image.Image, error)
	switch format {
	case FormatPNG:
		decodeConfig = func(b []byte) (image.Config, error) { return png.DecodeConfig(bytes.NewReader(b)) }
		decode = func(b []byte) (image.Image, error) { return png.Decode(bytes.NewReader(b)) }
	case FormatJPEG:
		decodeConfig = func(b []byte) (image.Config, error) { return jpeg.DecodeConfig(bytes.NewReader(b)) }
		decode = func(b []byte) (image.Image, error) { return jpeg.Decode(bytes.NewReader(b)) }
	case "":
		return nil, "", fmt.Errorf("%w: not an image (%d bytes), want png or jpeg", ErrFormat, len(data))
	default:
		return nil, "", fmt.Errorf("%w: %s, want png or jpeg", ErrFormat, format)
	}

	cfg, err := decodeConfig(data)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s header: %v", ErrCorrupt, format, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, "", fmt.Errorf("%w: %s is %d×%d pixels", ErrCorrupt, format, cfg.Width, cfg.Height)
	}
	if pixels := int64(cfg.Width) * int64(cfg.Height); maxPixels > 0 && pixels > int64(maxPixels) {
		return nil, "", fmt.Errorf("%w: %d×%d is %d pixels, the limit is %d", ErrTooLarge, cfg.Width, cfg.Height, pixels, maxPixels)
	}
	img, err := decode(data)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s: %v", ErrCorrupt, format, err)
	}
	return img, format, nil
}
