package main

import "testing"

func TestParseRemote(t *testing.T) {
	tests := []struct {
		arg   string
		ok    bool
		id, p string
	}{
		{"demo:/workspace/a.txt", true, "demo", "/workspace/a.txt"},
		{"demo:src/main.go", true, "demo", "/workspace/src/main.go"},
		{"demo:", true, "demo", "/workspace"},
		{"demo:/tmp/", true, "demo", "/tmp"},
		{"demo:../etc", true, "demo", "/etc"},
		{"./local:file", false, "", ""},
		{"/abs/path", false, "", ""},
		{"plain", false, "", ""},
		{":/x", false, "", ""},
		{"-", false, "", ""},
	}
	for _, tc := range tests {
		r, ok := parseRemote(tc.arg)
		if ok != tc.ok || r.id != tc.id || r.path != tc.p {
			t.Errorf("parseRemote(%q) = %+v, %v; want %s %s %v", tc.arg, r, ok, tc.id, tc.p, tc.ok)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 1 << 30: "1.0 GiB", 5 << 40: "5.0 TiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
