package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/sbx-dev/sbx/internal/server"
)

// previewOptions are the daemon's settings for preview URLs of exposed
// ports.
type previewOptions struct {
	PreviewDomain string `json:"preview-domain"`
	PreviewAddr   string `json:"preview-addr"`
	PublicURL     string `json:"public-url"`
}

func (o *previewOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.PreviewDomain, "preview-domain", "localhost",
		"parent domain of preview URLs {port}-{id}-{token}.DOMAIN; needs a wildcard DNS record (*.localhost works in local browsers)")
	f.StringVar(&o.PreviewAddr, "preview-addr", "127.0.0.1",
		`address of each exposed port's own listener, for machines without wildcard DNS ("" for none)`)
	f.StringVar(&o.PublicURL, "public-url", "",
		"URL at which browsers reach this daemon, the base of preview URLs (default http://<listen>)")
}

// previewConfig checks the preview flags and derives what they leave out
// from --listen.
func previewConfig(opts *options) (server.PreviewConfig, error) {
	_, apiPort, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return server.PreviewConfig{}, fmt.Errorf("--listen %q: use HOST:PORT such as 127.0.0.1:7070", opts.Listen)
	}
	domain := strings.ToLower(strings.Trim(opts.PreviewDomain, "."))
	if domain == "" || strings.ContainsAny(domain, ":/ ") {
		return server.PreviewConfig{}, fmt.Errorf("--preview-domain %q: use a bare domain such as localhost or preview.example.com", opts.PreviewDomain)
	}
	if opts.PreviewAddr != "" && net.ParseIP(opts.PreviewAddr) == nil && opts.PreviewAddr != "localhost" {
		return server.PreviewConfig{}, fmt.Errorf("--preview-addr %q: use an IP address such as 127.0.0.1, or \"\" for no per-port listeners", opts.PreviewAddr)
	}
	raw := opts.PublicURL
	if raw == "" {
		host, _, _ := net.SplitHostPort(opts.Listen)
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		raw = "http://" + net.JoinHostPort(host, apiPort)
	}
	pub, err := server.ParsePublicURL(raw)
	if err != nil {
		return server.PreviewConfig{}, fmt.Errorf("--public-url: %w", err)
	}
	cfg := server.PreviewConfig{Domain: domain, PublicURL: pub, ListenHost: opts.PreviewAddr}
	if p, err := strconv.Atoi(apiPort); err == nil && p != 0 {
		cfg.ReservedPorts = append(cfg.ReservedPorts, p)
	}
	return cfg, nil
}
