package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"

	"github.com/klauspost/compress/zstd"

	"github.com/sbx-dev/sbx/internal/errdefs"
)

// Archive format. An sbx archive object is
//
//	zstd frames of a tar stream || trailer
//
// where the trailer is trailerLen bytes: the magic "SBXARC01", the SHA-256
// of every byte before the trailer, and that byte count as a big-endian
// uint64. The digest covers the compressed bytes, so corruption and
// truncation are found without trusting the decompressor, and the trailer
// is written after the data, so an archive is produced in one streaming
// pass without knowing its size. zstd's own frame checksums (on by
// default) catch corruption early; the trailer catches what they cannot:
// a stream cut at a frame boundary, or frames swapped for other valid
// ones.
const (
	trailerMagic = "SBXARC01"
	trailerLen   = len(trailerMagic) + sha256.Size + 8
)

// ErrCorrupt is returned (wrapped) when an archive fails its checksum, has
// no valid trailer or does not decompress. It matches
// errdefs.ErrArchiveCorrupt.
var ErrCorrupt = errdefs.ErrArchiveCorrupt

// encoderConcurrency caps the goroutines one compression uses: sbxd
// shares its cores with the sandboxes.
func encoderConcurrency() int { return min(runtime.GOMAXPROCS(0), 4) }

// Writer compresses a tar stream into an archive. Write the tar bytes to
// it, then Close it to flush the compressor and append the trailer; until
// Close returns nil the archive is incomplete.
type Writer struct {
	w   *hashWriter
	enc *zstd.Encoder
	err error
}

// NewWriter returns a Writer producing an archive on w.
func NewWriter(w io.Writer) (*Writer, error) {
	hw := &hashWriter{w: w, h: sha256.New()}
	enc, err := zstd.NewWriter(hw,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderConcurrency(encoderConcurrency()),
		zstd.WithEncoderCRC(true),
		// Huffman-code literals even in blocks without matches: text
		// without repeats (logs, base64, minified code) shrinks by a
		// quarter, which the default skips to save time.
		zstd.WithAllLitEntropyCompression(true))
	if err != nil {
		return nil, err
	}
	return &Writer{w: hw, enc: enc}, nil
}

func (a *Writer) Write(p []byte) (int, error) {
	if a.err != nil {
		return 0, a.err
	}
	n, err := a.enc.Write(p)
	if err != nil {
		a.err = err
	}
	return n, err
}

// ReadFrom copies r into the archive (so io.Copy does not go byte by
// byte through a small buffer).
func (a *Writer) ReadFrom(r io.Reader) (int64, error) {
	if a.err != nil {
		return 0, a.err
	}
	n, err := a.enc.ReadFrom(r)
	if err != nil {
		a.err = err
	}
	return n, err
}

// Close finishes the archive: it flushes the compressor and writes the
// trailer. It does not close the underlying writer.
func (a *Writer) Close() error {
	if a.err != nil {
		a.enc.Close()
		return a.err
	}
	if err := a.enc.Close(); err != nil {
		a.err = err
		return err
	}
	var t [trailerLen]byte
	copy(t[:], trailerMagic)
	copy(t[len(trailerMagic):], a.w.h.Sum(nil))
	binary.BigEndian.PutUint64(t[len(trailerMagic)+sha256.Size:], uint64(a.w.n))
	if _, err := a.w.w.Write(t[:]); err != nil {
		a.err = err
		return err
	}
	a.err = errors.New("archive writer closed")
	return nil
}

// Sum is the hex SHA-256 recorded in the trailer; valid after Close.
func (a *Writer) Sum() string { return hex.EncodeToString(a.w.h.Sum(nil)) }

type hashWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (h *hashWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// Reader decompresses an archive, verifying it. Read yields the tar
// stream; the final Read reports io.EOF only once the whole archive has
// been read and its trailer matches, and an error wrapping ErrCorrupt if
// it does not. A caller that stops reading early (a tar reader stops at
// the end-of-archive marker) must call Verify before trusting what it
// read.
type Reader struct {
	v   *verifier
	dec *zstd.Decoder
	err error
}

// NewReader returns a Reader of the archive in r.
func NewReader(r io.Reader) (*Reader, error) {
	v := &verifier{r: r, h: sha256.New()}
	dec, err := zstd.NewReader(v, zstd.WithDecoderConcurrency(2), zstd.WithDecoderMaxWindow(1<<27))
	if err != nil {
		return nil, err
	}
	return &Reader{v: v, dec: dec}, nil
}

// Sum is the hex SHA-256 of the archive's data, as Writer.Sum gave when it
// was written; meaningful once Read returned io.EOF or Verify nil.
func (a *Reader) Sum() string { return hex.EncodeToString(a.v.h.Sum(nil)) }

func (a *Reader) Read(p []byte) (int, error) {
	if a.err != nil {
		return 0, a.err
	}
	n, err := a.dec.Read(p)
	switch {
	case err == io.EOF:
		// The decoder has seen the end of the frames; the trailer
		// decides.
		if _, verr := io.Copy(io.Discard, a.v); verr != nil {
			a.err = verr
			return n, verr
		}
		a.err = io.EOF
	case err != nil:
		a.err = a.classify(err)
		return n, a.err
	}
	return n, err
}

// WriteTo streams the decompressed archive to w, verifying it.
func (a *Reader) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, 1<<20)
	var total int64
	for {
		n, err := a.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// classify turns a decoder error into ErrCorrupt unless it came from the
// underlying reader (a network or storage failure, not corruption).
func (a *Reader) classify(err error) error {
	if a.v.err != nil && a.v.err != io.EOF && !errors.Is(a.v.err, ErrCorrupt) {
		return a.v.err
	}
	if errors.Is(err, ErrCorrupt) {
		return err
	}
	return fmt.Errorf("%w: decompressing: %v", ErrCorrupt, err)
}

// Verify reads whatever the consumer left of the archive (the tail of a
// tar stream after its end marker) and checks the trailer. It returns nil
// if the archive is whole and intact.
func (a *Reader) Verify() error {
	buf := make([]byte, 64<<10)
	for {
		_, err := a.Read(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Close releases the decompressor. It does not close the underlying
// reader.
func (a *Reader) Close() error {
	a.dec.Close()
	if a.err == nil {
		a.err = errors.New("archive reader closed")
	}
	return nil
}

// verifier passes everything but the last trailerLen bytes of r through,
// hashing them, and checks those last bytes as the trailer at io.EOF.
type verifier struct {
	r        io.Reader
	h        hash.Hash
	n        int64
	buf      []byte
	off, end int // pending bytes are buf[off:end]
	eof      bool
	err      error // sticky: io.EOF once verified, or the failure
}

func (v *verifier) Read(p []byte) (int, error) {
	for {
		if v.err != nil {
			return 0, v.err
		}
		pending := v.buf[v.off:v.end]
		if len(pending) > trailerLen {
			n := copy(p, pending[:len(pending)-trailerLen])
			v.h.Write(p[:n])
			v.n += int64(n)
			v.off += n
			return n, nil
		}
		if v.eof {
			if v.err = v.check(pending); v.err == nil {
				v.err = io.EOF
			}
			return 0, v.err
		}
		if v.buf == nil {
			v.buf = make([]byte, 256<<10)
		}
		v.end = copy(v.buf, pending)
		v.off = 0
		n, err := v.r.Read(v.buf[v.end:])
		v.end += n
		switch {
		case err == io.EOF:
			v.eof = true
		case err != nil:
			v.err = err
			return 0, err
		}
	}
}

// check verifies the trailer t, the last bytes of the source.
func (v *verifier) check(t []byte) error {
	if len(t) < trailerLen {
		return fmt.Errorf("%w: the archive is truncated (%d bytes, no trailer)", ErrCorrupt, v.n+int64(len(t)))
	}
	if !bytes.Equal(t[:len(trailerMagic)], []byte(trailerMagic)) {
		return fmt.Errorf("%w: the archive has no sbx trailer (truncated or not an sbx archive)", ErrCorrupt)
	}
	if n := binary.BigEndian.Uint64(t[len(trailerMagic)+sha256.Size:]); n != uint64(v.n) {
		return fmt.Errorf("%w: the trailer records %d bytes of data, the archive has %d", ErrCorrupt, n, v.n)
	}
	if !bytes.Equal(t[len(trailerMagic):len(trailerMagic)+sha256.Size], v.h.Sum(nil)) {
		return fmt.Errorf("%w: SHA-256 mismatch: the archive's bytes changed after it was written", ErrCorrupt)
	}
	return nil
}
