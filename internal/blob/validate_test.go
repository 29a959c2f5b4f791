package blob

import (
	"errors"
	"strings"
	"testing"

	"github.com/sbx-dev/sbx/internal/errdefs"
)

func TestValidateKey(t *testing.T) {
	tests := []struct {
		key     string
		wantErr string // substring; empty: valid
	}{
		{"a", ""},
		{"backups/2026/b-1.tar.zst", ""},
		{"...", ""},
		{"a/.b/c..", ""},
		{"ünï/ключ", ""},
		{"", "it is empty"},
		{"/a", "starts with '/'"},
		{"a/", "ends with '/'"},
		{"a//b", "empty segment"},
		{"a/../b", `".." segment`},
		{"./a", `"." segment`},
		{"a\x00b", "control character 0x00"},
		{"a\tb", "control character 0x09"},
		{"\xc3", "not valid UTF-8"},
		{strings.Repeat("a", MaxKeyLen+1), "the limit is 1024"},
		{"x/" + strings.Repeat("s", MaxSegmentLen+1), "the limit is 255"},
	}
	for _, tt := range tests {
		err := ValidateKey(tt.key)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ValidateKey(%.40q) = %v, want nil", tt.key, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ValidateKey(%.40q) = %v, want an error containing %q", tt.key, err, tt.wantErr)
			continue
		}
		if !errors.Is(err, ErrInvalidKey) || !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ValidateKey(%.40q) error does not match ErrInvalidKey and errdefs.ErrInvalidArgument", tt.key)
		}
		if !strings.HasPrefix(err.Error(), "invalid blob key") {
			t.Errorf("error %q does not say what is invalid first", err)
		}
	}
}

func TestValidatePrefix(t *testing.T) {
	valid := []string{"", "a", "a/", "a/b", "a/..", "a/.", "a/b/c."}
	invalid := []string{"/", "/a", "a//", "../a", "a/./b", "a\n"}
	for _, p := range valid {
		if err := ValidatePrefix(p); err != nil {
			t.Errorf("ValidatePrefix(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range invalid {
		if err := ValidatePrefix(p); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidatePrefix(%q) = %v, want ErrInvalidKey", p, err)
		}
	}
}

func TestValidateMetadata(t *testing.T) {
	tests := []struct {
		name    string
		m       map[string]string
		wantErr string
	}{
		{"nil", nil, ""},
		{"ok", map[string]string{"a-1": "x", "0": ""}, ""},
		{"exactly the limit", map[string]string{"k": strings.Repeat("v", MaxMetadataSize-1)}, ""},
		{"escaped bytes count triple", map[string]string{"k": strings.Repeat(" ", MaxMetadataSize/3+1)}, "the limit is 1024"},
		{"upper case", map[string]string{"A": "x"}, `key "A": byte 0 ('A')`},
		{"leading dash", map[string]string{"-a": "x"}, "starts with '-'"},
		{"empty key", map[string]string{"": "x"}, "it is empty"},
		{"bad value", map[string]string{"k": "\xff"}, "not valid UTF-8"},
	}
	for _, tt := range tests {
		err := ValidateMetadata(tt.m)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: err = %v, want one containing %q", tt.name, err, tt.wantErr)
		case tt.wantErr != "" && (!errors.Is(err, ErrInvalidMetadata) || !errors.Is(err, errdefs.ErrInvalidArgument)):
			t.Errorf("%s: err %v does not match ErrInvalidMetadata and errdefs.ErrInvalidArgument", tt.name, err)
		}
	}
}

func TestEscapeValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain-ASCII_~!", "plain-ASCII_~!"},
		{"a b", "a%20b"},
		{"100%", "100%25"},
		{"line\nbreak", "line%0Abreak"},
		{"ü", "%C3%BC"},
	}
	for _, tt := range tests {
		if got := EscapeValue(tt.in); got != tt.want {
			t.Errorf("EscapeValue(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got, err := UnescapeValue(tt.want); err != nil || got != tt.in {
			t.Errorf("UnescapeValue(%q) = %q, %v, want %q", tt.want, got, err, tt.in)
		}
	}
	for _, bad := range []string{"%", "%4", "%zz", "a%g0"} {
		if _, err := UnescapeValue(bad); err == nil {
			t.Errorf("UnescapeValue(%q) succeeded, want an error", bad)
		}
	}
}

func FuzzEscapeRoundTrip(f *testing.F) {
	for _, s := range []string{"", "a b", "%%", "\x00\xff", "ü/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := EscapeValue(s)
		for i := 0; i < len(e); i++ {
			if e[i] <= ' ' || e[i] >= 0x7f {
				t.Fatalf("EscapeValue(%q) = %q has byte %#x", s, e, e[i])
			}
		}
		if len(e) != escapedLen(s) {
			t.Fatalf("escapedLen(%q) = %d, EscapeValue gave %d bytes", s, escapedLen(s), len(e))
		}
		got, err := UnescapeValue(e)
		if err != nil || got != s {
			t.Fatalf("round trip of %q: %q, %v", s, got, err)
		}
	})
}
