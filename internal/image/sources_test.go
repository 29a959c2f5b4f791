package image

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseDeb822(t *testing.T) {
	const in = `Types: deb
# http://snapshot.example.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.org/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

# a whole comment stanza

types: deb deb-src
URIs: http://security.example.org/debian-security
  http://security2.example.org/debian-security
Suites: bookworm-security
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGPL0BUBEADmW5NcOOsbEIU8TDQQJ5nmKdVHpLlRSDvSeOgA0JRr3K3X7+Yg
 -----END PGP PUBLIC KEY BLOCK-----

Enabled: no
Types: deb
URIs: http://disabled.example.org/debian
Suites: bookworm

Types: deb
Suites: bookworm
Components: main
`
	got, err := parseDeb822(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []aptSource{
		{
			Types: []string{"deb"}, URIs: []string{"http://mirror.example.org/debian"},
			Suites: []string{"bookworm", "bookworm-updates"}, Components: []string{"main", "contrib"},
		},
		{
			Types:      []string{"deb", "deb-src"},
			URIs:       []string{"http://security.example.org/debian-security", "http://security2.example.org/debian-security"},
			Suites:     []string{"bookworm-security"},
			Components: []string{"main"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseDeb822:\n got %+v\nwant %+v", got, want)
	}
}

func TestParseOneLine(t *testing.T) {
	const in = `# main archive
deb http://mirror.example.org/debian bookworm main contrib non-free-firmware
deb-src http://mirror.example.org/debian bookworm main

deb [signed-by=/usr/share/keyrings/x.gpg arch=amd64] https://apt.example.com/repo stable main # trailing comment
deb [ arch=amd64 ] http://other.example.org/debian	bookworm-updates	main
deb http://flat.example.org/repo ./
deb [arch=amd64 http://broken.example.org/debian bookworm main
deb
#deb http://commented.example.org/debian bookworm main
`
	got, err := parseOneLine(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []aptSource{
		{Types: []string{"deb"}, URIs: []string{"http://mirror.example.org/debian"}, Suites: []string{"bookworm"}, Components: []string{"main", "contrib", "non-free-firmware"}},
		{Types: []string{"deb-src"}, URIs: []string{"http://mirror.example.org/debian"}, Suites: []string{"bookworm"}, Components: []string{"main"}},
		{Types: []string{"deb"}, URIs: []string{"https://apt.example.com/repo"}, Suites: []string{"stable"}, Components: []string{"main"}},
		{Types: []string{"deb"}, URIs: []string{"http://other.example.org/debian"}, Suites: []string{"bookworm-updates"}, Components: []string{"main"}},
		{Types: []string{"deb"}, URIs: []string{"http://flat.example.org/repo"}, Suites: []string{"./"}, Components: []string{}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseOneLine:\n got %+v\nwant %+v", got, want)
	}
}

func TestChooseMirrors(t *testing.T) {
	src := func(typ, uri string, suites ...string) aptSource {
		return aptSource{Types: strings.Fields(typ), URIs: []string{uri}, Suites: suites, Components: []string{"main"}}
	}
	tests := []struct {
		name    string
		srcs    []aptSource
		want    mirrors
		wantErr string
	}{
		{
			name: "bookworm host",
			srcs: []aptSource{
				src("deb", "https://packages.example.com/apt", "cloud-sdk-bookworm"),
				src("deb", "http://mirror.example.org/debian", "bookworm", "bookworm-updates"),
				src("deb", "http://mirror.example.org/debian-security", "bookworm-security"),
			},
			want: mirrors{Main: "http://mirror.example.org/debian", Security: "http://mirror.example.org/debian-security"},
		},
		{
			name: "the first entry serving bookworm wins over an earlier plain Debian one",
			srcs: []aptSource{
				src("deb", "http://trixie.example.org/debian", "trixie"),
				src("deb", "http://bookworm.example.org/debian", "bookworm-updates"),
			},
			want: mirrors{Main: "http://bookworm.example.org/debian"},
		},
		{
			name: "a trixie host falls back to its Debian mirror and security archive",
			srcs: []aptSource{
				src("deb", "http://mirror.example.org/debian", "trixie", "trixie-updates"),
				src("deb", "http://security.example.org/debian-security/", "trixie-security"),
			},
			want: mirrors{Main: "http://mirror.example.org/debian", Security: "http://security.example.org/debian-security/"},
		},
		{
			name: "source-only, cdrom and security entries do not serve the release",
			srcs: []aptSource{
				src("deb-src", "http://src.example.org/debian", "bookworm"),
				src("deb", "cdrom:[Debian GNU/Linux 12]/", "bookworm"),
				src("deb", "http://mirror.example.org/debian-security", "bookworm-security"),
				src("deb deb-src", "file:///srv/mirror/debian", "bookworm"),
			},
			want: mirrors{Main: "file:///srv/mirror/debian", Security: "http://mirror.example.org/debian-security"},
		},
		{
			name: "an Ubuntu host has no Debian mirror",
			srcs: []aptSource{
				src("deb", "http://archive.example.com/ubuntu", "noble", "noble-updates"),
				src("deb", "http://security.example.com/ubuntu", "noble-security"),
			},
			wantErr: "pass --mirror URL",
		},
		{name: "no sources at all", wantErr: "no Debian mirror"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chooseMirrors(tt.srcs, "bookworm")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadHostSources(t *testing.T) {
	etc := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		p := filepath.Join(etc, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("sources.list.d/nodesource.sources.disabled", "Types: deb\nURIs: http://disabled.example.org/debian\nSuites: bookworm\n")
	write("sources.list.d/b.list", "deb http://b.example.org/debian bookworm main\n")
	write("sources.list.d/a.sources", "Types: deb\nURIs: http://a.example.org/debian\nSuites: bookworm\nComponents: main\n")
	write("sources.list", "# nothing here but a comment\n")

	srcs, err := readHostSources(etc)
	if err != nil {
		t.Fatal(err)
	}
	var uris []string
	for _, s := range srcs {
		uris = append(uris, s.URIs...)
	}
	want := []string{"http://a.example.org/debian", "http://b.example.org/debian"}
	if !reflect.DeepEqual(uris, want) {
		t.Errorf("URIs in apt's reading order = %v, want %v", uris, want)
	}

	write("sources.list", "deb http://first.example.org/debian bookworm main\n")
	srcs, err = readHostSources(etc)
	if err != nil {
		t.Fatal(err)
	}
	m, err := chooseMirrors(srcs, "bookworm")
	if err != nil || m.Main != "http://first.example.org/debian" {
		t.Errorf("chooseMirrors = %+v, %v; want sources.list read first", m, err)
	}
}

func TestResolveMirrorsOverrides(t *testing.T) {
	m, err := resolveMirrors("bookworm", BuildOptions{Mirror: "http://override.example.org/debian", SecurityMirror: "none"})
	if err != nil {
		t.Fatal(err)
	}
	if m != (mirrors{Main: "http://override.example.org/debian"}) {
		t.Errorf("got %+v", m)
	}
	if _, err := resolveMirrors("bookworm", BuildOptions{Mirror: "ftp//nonsense", SecurityMirror: "none"}); err == nil || !strings.Contains(err.Error(), "not an http, https or file URL") {
		t.Errorf("bad --mirror: err = %v", err)
	}
}
