package agent

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"
)

func TestCopyToFile(t *testing.T) {
	dirs := map[string]string{"disk": t.TempDir()}
	// tmpfs may refuse direct I/O: the buffered fallback.
	if d, err := os.MkdirTemp("/dev/shm", "sbx-directio-"); err == nil {
		dirs["tmpfs"] = d
		t.Cleanup(func() { os.RemoveAll(d) })
	}
	sizes := []int{0, 100, directAlign, directChunk - 1, directChunk, directChunk + 1, 3*directChunk + directAlign + 7}
	for name, dir := range dirs {
		for _, size := range sizes {
			data := make([]byte, size)
			r := rand.NewChaCha8([32]byte{byte(size)})
			r.Read(data)
			f, err := os.CreateTemp(dir, "f")
			if err != nil {
				t.Fatal(err)
			}
			// A reader of small pieces, as a request body is.
			n, err := copyToFile(f, io.LimitReader(iotestHalf{bytes.NewReader(data)}, int64(size)))
			f.Close()
			got, rerr := os.ReadFile(f.Name())
			if err != nil || rerr != nil || n != int64(size) || !bytes.Equal(got, data) {
				t.Errorf("%s, %d bytes: wrote %d (%v), read back %d bytes (%v), equal %v", name, size, n, err, len(got), rerr, bytes.Equal(got, data))
			}
		}
	}
	// The reader's failure comes back as it is.
	f, err := os.CreateTemp(dirs["disk"], "f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A cut request body ends with io.ErrUnexpectedEOF: a failure, never
	// the end of the file, whatever chunk it falls in.
	for _, before := range []int{0, 10, directChunk, 2*directChunk + 5} {
		for _, boom := range []error{errors.New("client went away"), io.ErrUnexpectedEOF} {
			src := io.MultiReader(bytes.NewReader(make([]byte, before)), errReader{boom})
			if _, err := copyToFile(f, src); !errors.Is(err, boom) {
				t.Errorf("copy of %d bytes, then %v: got %v", before, boom, err)
			}
		}
	}
}

// iotestHalf returns at most half of what is asked, like a socket.
type iotestHalf struct{ r io.Reader }

func (h iotestHalf) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:len(p)/2]
	}
	return h.r.Read(p)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
