package api

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestNetworkJSON(t *testing.T) {
	tests := []struct {
		in   string
		want Network
		err  string
	}{
		{`"none"`, Network{Mode: "none"}, ""},
		{`"internet"`, Network{Mode: "internet"}, ""},
		{`{"mode": "internet", "allow": ["pypi.org"], "deny": ["203.0.113.7"]}`,
			Network{Mode: "internet", Allow: []string{"pypi.org"}, Deny: []string{"203.0.113.7"}}, ""},
		{`{"allow": []}`, Network{Allow: []string{}}, ""},
		{`{"alow": ["pypi.org"]}`, Network{}, "alow"},
		{`5`, Network{}, "network must be"},
		{`["none"]`, Network{}, "network must be"},
	}
	for _, tc := range tests {
		var n Network
		err := json.Unmarshal([]byte(tc.in), &n)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want one mentioning %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || n.Mode != tc.want.Mode || !slices.Equal(n.Allow, tc.want.Allow) || !slices.Equal(n.Deny, tc.want.Deny) {
			t.Errorf("%s: got %+v, %v; want %+v", tc.in, n, err, tc.want)
		}
	}

	// In a request, unknown fields elsewhere are still the decoder's
	// business, and an absent network is nil (the default).
	var req CreateSandboxRequest
	if err := json.Unmarshal([]byte(`{"image": "default"}`), &req); err != nil || req.Network != nil {
		t.Errorf("absent network: %+v, %v", req.Network, err)
	}
}

func TestNetworkValidate(t *testing.T) {
	tests := []struct {
		name string
		n    *Network
		err  string // empty: valid
	}{
		{"nil", nil, ""},
		{"default", &Network{}, ""},
		{"none", &Network{Mode: "none"}, ""},
		{"allow forms", &Network{Allow: []string{"203.0.113.7", "198.51.100.0/24", "pypi.org", "Files.PythonHosted.org."}}, ""},
		{"deny private", &Network{Deny: []string{"10.0.0.0/8", "192.0.2.1"}}, ""},
		{"allow everything", &Network{Allow: []string{"0.0.0.0/0"}}, ""},
		{"unknown mode", &Network{Mode: "bridge"}, `use "internet" or "none"`},
		{"none with lists", &Network{Mode: "none", Deny: []string{"203.0.113.7"}}, "takes no allow or deny"},
		{"empty entry", &Network{Allow: []string{""}}, "empty entry"},
		{"bad prefix", &Network{Allow: []string{"203.0.113.0/40"}}, "CIDR"},
		{"bad address", &Network{Deny: []string{"300.1.2.3"}}, "IP address"},
		{"ipv6 address", &Network{Deny: []string{"2001:db8::1"}}, "IPv4 only"},
		{"ipv6 prefix", &Network{Allow: []string{"2001:db8::/32"}}, "IPv4 only"},
		{"bad host", &Network{Allow: []string{"-bad.example"}}, "start or end with '-'"},
		{"host with space", &Network{Allow: []string{"a b"}}, "not allowed"},
		{"allow private", &Network{Allow: []string{"10.1.2.0/24"}}, "10.0.0.0/8"},
		{"allow metadata", &Network{Allow: []string{"169.254.169.254"}}, "link-local"},
		{"allow loopback", &Network{Allow: []string{"127.0.0.1"}}, "loopback"},
		{"allow cgnat", &Network{Allow: []string{"100.100.100.100"}}, "CGNAT"},
		{"too many", &Network{Deny: slices.Repeat([]string{"203.0.113.7"}, MaxNetworkRules+1)}, "at most"},
	}
	for _, tc := range tests {
		err := tc.n.Validate()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v, want valid", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: %v, want an error mentioning %q", tc.name, err, tc.err)
		}
	}
}

func TestNetworkNormalizedAndEqual(t *testing.T) {
	n := &Network{Allow: []string{"PyPI.org.", "203.0.113.7", "198.51.100.9/24", "pypi.org"}}
	got := n.Normalized()
	want := &Network{Mode: "internet", Allow: []string{"pypi.org", "203.0.113.7/32", "198.51.100.0/24"}}
	if got.Mode != want.Mode || !slices.Equal(got.Allow, want.Allow) || got.Deny != nil {
		t.Errorf("Normalized = %+v, want %+v", got, want)
	}
	for _, tc := range []struct {
		a, b *Network
		eq   bool
	}{
		{nil, &Network{Mode: "internet"}, true},
		{nil, &Network{}, true},
		{&Network{Mode: "none"}, nil, false},
		{n, want, true},
		{&Network{Deny: []string{"203.0.113.7"}}, &Network{Deny: []string{"203.0.113.8"}}, false},
	} {
		if got := tc.a.Equal(tc.b); got != tc.eq {
			t.Errorf("%+v.Equal(%+v) = %v, want %v", tc.a, tc.b, got, tc.eq)
		}
	}
}
