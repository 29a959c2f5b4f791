package main

import (
	"strings"
	"testing"

	"github.com/sbx-dev/sbx/client"
)

func TestTokenHelpNamesTheListenAddress(t *testing.T) {
	if clientDefaultURL != client.DefaultURL {
		t.Fatalf("clientDefaultURL %q differs from client.DefaultURL %q", clientDefaultURL, client.DefaultURL)
	}
	tests := []struct {
		listen, url string
		sbxURL      bool // SBX_URL must be set for sbx and the SDK
	}{
		{"127.0.0.1:7070", "http://127.0.0.1:7070", false},
		{"127.0.0.1:8080", "http://127.0.0.1:8080", true},
		{"0.0.0.0:9000", "http://127.0.0.1:9000", true},
		{"0.0.0.0:7070", "http://127.0.0.1:7070", false},
		{"[::]:7071", "http://127.0.0.1:7071", true},
		{":7072", "http://127.0.0.1:7072", true},
		{"192.0.2.10:7070", "http://192.0.2.10:7070", true},
		{"[::1]:7070", "http://[::1]:7070", true},
		{"localhost:7070", "http://localhost:7070", true},
	}
	for _, tc := range tests {
		t.Run(tc.listen, func(t *testing.T) {
			msg := tokenHelp("/var/lib/sbx/token", tc.listen)
			if want := `Bearer $SBX_TOKEN" ` + tc.url + "/v1/sandboxes\n"; !strings.Contains(msg, want) {
				t.Errorf("message does not contain %q:\n%s", want, msg)
			}
			if !strings.Contains(msg, "export SBX_TOKEN=$(cat /var/lib/sbx/token)") {
				t.Errorf("message does not say how to load the token:\n%s", msg)
			}
			if got := strings.Contains(msg, "export SBX_URL="+tc.url+"\n"); got != tc.sbxURL {
				t.Errorf("export SBX_URL shown: %v, want %v:\n%s", got, tc.sbxURL, msg)
			}
		})
	}
}
