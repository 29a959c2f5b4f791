package network

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseResolvConf(t *testing.T) {
	rc := parseResolvConf([]byte(`# generated
nameserver 127.0.0.53
nameserver 10.255.255.53 # the cloud's
nameserver fe80::1%eth0
nameserver 2001:db8::53
domain old.example
search corp.example example.com
options edns0 trust-ad
options ndots:2
; comment
nameserver not-an-address
`))
	wantNS := []netip.Addr{netip.MustParseAddr("127.0.0.53"), netip.MustParseAddr("10.255.255.53"), netip.MustParseAddr("2001:db8::53")}
	if !slices.Equal(rc.nameservers, wantNS) {
		t.Errorf("nameservers = %v, want %v", rc.nameservers, wantNS)
	}
	if got := usable(rc.nameservers); !slices.Equal(got, wantNS[1:2]) {
		t.Errorf("usable = %v, want only 10.255.255.53 (no loopback, no IPv6)", got)
	}
	if !slices.Equal(rc.search, []string{"corp.example", "example.com"}) {
		t.Errorf("search = %v", rc.search)
	}
	if !slices.Equal(rc.options, []string{"edns0", "trust-ad", "ndots:2"}) {
		t.Errorf("options = %v", rc.options)
	}
	rc.nameservers = usable(rc.nameservers)
	out := string(rc.render())
	for _, want := range []string{"nameserver 10.255.255.53\n", "search corp.example example.com\n", "options edns0 trust-ad ndots:2\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("rendered resolv.conf lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "127.0.0.53") {
		t.Errorf("rendered resolv.conf has a loopback resolver:\n%s", out)
	}
}

// TestHostDNSResolved checks the fallback to systemd-resolved's upstream
// list when /etc/resolv.conf points at its loopback stub.
func TestHostDNSResolved(t *testing.T) {
	dir := t.TempDir()
	stub := filepath.Join(dir, "stub.conf")
	upstream := filepath.Join(dir, "resolved.conf")
	os.WriteFile(stub, []byte("nameserver 127.0.0.53\noptions edns0\nsearch lan\n"), 0o644)
	os.WriteFile(upstream, []byte("nameserver 192.0.2.53\nnameserver 198.51.100.53\nsearch lan\n"), 0o644)
	defer func(a, b string) { hostResolvConf, resolvedResolvConf = a, b }(hostResolvConf, resolvedResolvConf)
	hostResolvConf, resolvedResolvConf = stub, upstream

	rc, err := hostDNS()
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("198.51.100.53")}
	if !slices.Equal(rc.nameservers, want) || !slices.Equal(rc.search, []string{"lan"}) {
		t.Errorf("hostDNS = %+v, want the upstreams %v", rc, want)
	}

	// Only loopback anywhere: no nameserver, no error.
	os.WriteFile(upstream, []byte("nameserver 127.0.0.1\n"), 0o644)
	if rc, err := hostDNS(); err != nil || len(rc.nameservers) != 0 {
		t.Errorf("hostDNS with loopback only = %+v, %v; want none", rc, err)
	}
}

func TestHostsFile(t *testing.T) {
	got := string(hostsFile("box", netip.MustParseAddr("10.213.0.7")))
	if !strings.Contains(got, "127.0.0.1\tlocalhost\n") || !strings.HasSuffix(got, "10.213.0.7\tbox\n") {
		t.Errorf("hosts:\n%s", got)
	}
	if got := string(HostsNone("box")); !strings.HasSuffix(got, "127.0.1.1\tbox\n") {
		t.Errorf("hosts without network:\n%s", got)
	}
}

func TestMerge(t *testing.T) {
	p := netip.MustParsePrefix
	got := merge([]netip.Prefix{p("10.1.2.3/32"), p("198.51.100.0/24"), p("10.0.0.0/8"), p("198.51.100.7/32"), p("10.0.0.0/16"), p("203.0.113.9/32")})
	want := []netip.Prefix{p("10.0.0.0/8"), p("198.51.100.0/24"), p("203.0.113.9/32")}
	if !slices.Equal(got, want) {
		t.Errorf("merge = %v, want %v", got, want)
	}
}

// TestLeases checks address allocation: unique addresses, the gateway and
// broadcast never handed out, exhaustion reported, and release making the
// address available again.
func TestLeases(t *testing.T) {
	h := &Host{stateDir: t.TempDir(), subnet: netip.MustParsePrefix("10.9.0.0/29")}
	os.MkdirAll(h.leaseDir(), 0o700)
	first, n := h.hostRange()
	if first != netip.MustParseAddr("10.9.0.2") || n != 5 {
		t.Fatalf("hostRange = %v, %d; want 10.9.0.2, 5", first, n)
	}
	seen := map[netip.Addr]bool{}
	for i := range n {
		a, err := h.lease("s" + string(rune('a'+i)))
		if err != nil {
			t.Fatal(err)
		}
		if seen[a] || a == netip.MustParseAddr("10.9.0.1") || a == netip.MustParseAddr("10.9.0.7") || !h.subnet.Contains(a) {
			t.Errorf("lease %d = %v", i, a)
		}
		seen[a] = true
	}
	if _, err := h.lease("more"); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("lease in a full subnet: %v", err)
	}
	if err := h.unlease(netip.MustParseAddr("10.9.0.4"), "not-the-holder"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.lease("more"); err == nil {
		t.Error("unlease by another id freed the address")
	}
	holder, _ := os.ReadFile(filepath.Join(h.leaseDir(), "10.9.0.4"))
	if err := h.unlease(netip.MustParseAddr("10.9.0.4"), string(holder)); err != nil {
		t.Fatal(err)
	}
	if a, err := h.lease("more"); err != nil || a != netip.MustParseAddr("10.9.0.4") {
		t.Errorf("lease after release = %v, %v; want 10.9.0.4", a, err)
	}
}

func TestRulesetNames(t *testing.T) {
	a := netip.MustParseAddr("10.213.0.5")
	if got := chainName(a); got != "sb-0ad50005" {
		t.Errorf("chainName = %q", got)
	}
	if got := hostVeth(a); got != "sbv0ad50005" || len(got) > 15 {
		t.Errorf("hostVeth = %q", got)
	}
	if !validName("0123abcd") || validName("sbx-x") || validName("") || validName("abcdefghijkl") {
		t.Error("validName")
	}
}
