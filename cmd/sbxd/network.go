package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/spf13/pflag"

	"github.com/sbx-dev/sbx/internal/backend/oci"
)

// networkOptions are the daemon's settings for sandbox networking. They are
// persistent flags: `sbxd cleanup` must see the same network to remove it.
type networkOptions struct {
	NoSandboxNetwork bool     `json:"no-sandbox-network"`
	SandboxSubnet    string   `json:"sandbox-subnet"`
	DNS              []string `json:"dns"`
}

func (o *networkOptions) addFlags(f *pflag.FlagSet) {
	f.BoolVar(&o.NoSandboxNetwork, "no-sandbox-network", false,
		"give sandboxes a loopback interface only and leave the host's network configuration alone")
	f.StringVar(&o.SandboxSubnet, "sandbox-subnet", "",
		"IPv4 prefix sandboxes take addresses from (default: a free /22 of 10.213.0.0/16)")
	f.StringSliceVar(&o.DNS, "dns", nil,
		"IPv4 nameservers of sandboxes, comma-separated (default: the host's, from /etc/resolv.conf, or systemd-resolved's upstreams)")
}

// apply checks the network flags and sets them in cfg.
func (o *networkOptions) apply(cfg *oci.Config) error {
	cfg.DisableNetwork = o.NoSandboxNetwork
	if o.SandboxSubnet != "" {
		p, err := netip.ParsePrefix(o.SandboxSubnet)
		if err != nil || !p.Addr().Is4() {
			return fmt.Errorf("--sandbox-subnet %q: use an IPv4 prefix such as 10.213.0.0/22", o.SandboxSubnet)
		}
		cfg.Subnet = p
	}
	for _, s := range o.DNS {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil || !a.Is4() {
			return fmt.Errorf("--dns %q: use IPv4 addresses such as 192.0.2.53", s)
		}
		cfg.Nameservers = append(cfg.Nameservers, a)
	}
	return nil
}
