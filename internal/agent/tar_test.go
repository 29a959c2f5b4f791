package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"slices"
	"testing"

	"github.com/sbx-dev/sbx/api"
)

// tarOf builds an archive; each entry is name, then body (regular file),
// "->target" (symlink) or "dir" (directory).
func tarOf(t *testing.T, entries ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e[0], Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e[1]))}
		switch {
		case e[1] == "dir":
			h.Typeflag, h.Size, h.Mode = tar.TypeDir, 0, 0o755
		case len(e[1]) > 2 && e[1][:2] == "->":
			h.Typeflag, h.Size, h.Linkname = tar.TypeSymlink, 0, e[1][2:]
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e[1]))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func TestTarUploadDownload(t *testing.T) {
	f := newFSFixture(t)
	archive := tarOf(t,
		[2]string{"src/", "dir"},
		[2]string{"src/main.go", "package main\n"},
		[2]string{"node_modules/x/index.js", "x"},
		[2]string{"README.md", "# hi\n"},
		[2]string{"latest", "->src/main.go"},
	)
	resp, body := f.do("PUT", "/fs/tar?path=/work/proj", bytes.NewReader(archive))
	if resp.StatusCode != 200 {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	res := decode[api.TarResult](t, body)
	if res != (api.TarResult{Path: "/work/proj", Files: 3, Directories: 1, Symlinks: 1, Bytes: 13 + 1 + 5}) {
		t.Errorf("result %+v", res)
	}
	if b, _ := os.ReadFile(f.host("/work/proj/latest")); string(b) != "package main\n" {
		t.Errorf("symlink content %q", b)
	}

	// gzip is recognised.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarOf(t, [2]string{"zipped.txt", "z"}))
	zw.Close()
	resp, body = f.do("PUT", "/fs/tar?path=/work/proj", &gz)
	if resp.StatusCode != 200 || decode[api.TarResult](t, body).Files != 1 {
		t.Fatalf("gzip upload: %d %s", resp.StatusCode, body)
	}

	resp, body = f.do("GET", "/fs/tar?path=/work/proj&exclude=node_modules&exclude=*.md", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-tar" {
		t.Fatalf("download: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var names []string
	tr := tar.NewReader(bytes.NewReader(body))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	if want := []string{"latest", "src/", "src/main.go", "zipped.txt"}; !slices.Equal(names, want) {
		t.Errorf("downloaded %q, want %q", names, want)
	}
}

func TestTarDownloadHonoursGitignore(t *testing.T) {
	f := newFSFixture(t)
	archive := tarOf(t,
		[2]string{".gitignore", "*.log\nbuild/\n"},
		[2]string{"main.go", "package main\n"},
		[2]string{"debug.log", "noise"},
		[2]string{"build/out", "binary"},
	)
	if resp, body := f.do("PUT", "/fs/tar?path=/work/gi", bytes.NewReader(archive)); resp.StatusCode != 200 {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{".gitignore", "build/", "build/out", "debug.log", "main.go"}},
		{"&gitignore=true", []string{".gitignore", "main.go"}},
	} {
		resp, body := f.do("GET", "/fs/tar?path=/work/gi"+tc.query, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("download%s: %d %s", tc.query, resp.StatusCode, body)
		}
		var names []string
		tr := tar.NewReader(bytes.NewReader(body))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, h.Name)
		}
		if !slices.Equal(names, tc.want) {
			t.Errorf("download%s: %q, want %q", tc.query, names, tc.want)
		}
	}
	if resp, _ := f.do("GET", "/fs/tar?path=/work/gi&gitignore=maybe", nil); resp.StatusCode != 400 {
		t.Errorf("gitignore=maybe: %d, want 400", resp.StatusCode)
	}
}

func TestTarUploadRefusesSlips(t *testing.T) {
	f := newFSFixture(t)
	os.MkdirAll(f.host("/work"), 0o755)
	os.WriteFile(f.host("/secret"), []byte("keep"), 0o644)
	tests := []struct {
		name    string
		archive []byte
		mention string
	}{
		{"dot-dot", tarOf(t, [2]string{"../secret", "pwned"}), "../secret"},
		{"absolute", tarOf(t, [2]string{"/secret", "pwned"}), "/secret"},
		{"symlink out", tarOf(t, [2]string{"l", "->../"}), `"l"`},
		{"write through symlink", tarOf(t, [2]string{"l", "->."}, [2]string{"m", "->l/.."}, [2]string{"m/secret", "pwned"}), "m/secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.do("PUT", "/fs/tar?path=/work/x", bytes.NewReader(tc.archive))
			wantErr(t, resp, body, 400, api.CodeInvalidPath, tc.mention)
			if b, _ := os.ReadFile(f.host("/secret")); string(b) != "keep" {
				t.Fatalf("file outside the target changed: %q", b)
			}
		})
	}
	resp, body := f.do("PUT", "/fs/tar?path=/work/x", bytes.NewReader([]byte("definitely not a tar stream, just some text that is long enough")))
	wantErr(t, resp, body, 400, api.CodeInvalidRequest, "/work/x")
	noTemps(t, f.root)
}
