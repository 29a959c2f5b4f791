package oci

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/internal/backend"
	"github.com/sbx-dev/sbx/internal/network"
)

// Sandbox networking. The runtime creates the sandbox's network namespace
// (owned by the sandbox's user namespace, so that its root may bind low
// ports and mount its own sysfs); once `run` returns, the host side
// (internal/network) creates the veth pair inside it through a pidfd of
// the sandbox's init, before the sandbox is handed to anyone. A sandbox
// with Spec.Network.None, or any sandbox with Config.DisableNetwork, keeps
// the namespace's loopback only.
//
// Every sandbox gets its own /etc/resolv.conf (the instance's nameservers)
// and /etc/hosts (its id on its address), written into its directory and
// bound over the image's, writable by sandbox root like a machine's own.
//
// The host side keeps its records in /run/sbx/<hash>/network: like the
// interfaces and firewall rules they describe, they do not survive a
// reboot, and they are on tmpfs, off the start path's disk writes.

const (
	resolvFile = "resolv.conf"
	hostsFile  = "hosts"
)

func (b *Backend) initNetwork(cfg Config) error {
	if cfg.DisableNetwork {
		return nil
	}
	h, err := network.Open(network.Config{
		Name:        b.hash,
		StateDir:    filepath.Join(filepath.Dir(b.rt.root), "network"),
		Subnet:      cfg.Subnet,
		Nameservers: cfg.Nameservers,
		Logger:      b.log,
	})
	if err != nil {
		return fmt.Errorf("sandbox networking: %w", err)
	}
	b.net = h
	return nil
}

// prepareNetwork leases the sandbox its address and resolves its policy
// (nil Attachment without network), and writes the files bound into it.
func (b *Backend) prepareNetwork(ctx context.Context, spec backend.Spec, dir string) (*network.Attachment, []specs.Mount, error) {
	var (
		att    *network.Attachment
		resolv = []byte("# This sandbox has no network.\n")
		hosts  = network.HostsNone(spec.ID)
	)
	if b.net != nil && !spec.Network.None {
		var err error
		att, err = b.net.Prepare(ctx, spec.ID, network.Policy{Allow: spec.Network.Allow, Deny: spec.Network.Deny})
		if err != nil {
			return nil, nil, err
		}
		resolv, hosts = b.net.ResolvConf(), att.Hosts()
	}
	var ms []specs.Mount
	for _, f := range []struct {
		name, dest string
		data       []byte
	}{{resolvFile, "/etc/resolv.conf", resolv}, {hostsFile, "/etc/hosts", hosts}} {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return nil, nil, err
		}
		if b.userns != nil {
			if err := os.Chown(p, int(b.idMap.host), int(b.idMap.host)); err != nil {
				return nil, nil, err
			}
		}
		ms = append(ms, specs.Mount{Destination: f.dest, Type: "bind", Source: p,
			Options: []string{"bind", "rw", "nosuid", "nodev", "noexec"}})
	}
	return att, ms, nil
}

// connectNetwork plugs the running sandbox of p into the bridge.
func (b *Backend) connectNetwork(ctx context.Context, att *network.Attachment, p initProc) error {
	if att == nil {
		return nil
	}
	pidfd, err := p.open()
	if err != nil {
		return err
	}
	if pidfd < 0 {
		return fmt.Errorf("sandbox init (pid %d) exited during start", p.pid)
	}
	defer unix.Close(pidfd)
	if err := b.net.Connect(ctx, att, pidfd); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	return nil
}

// releaseNetwork removes the host side of sandbox id's network, if any.
func (b *Backend) releaseNetwork(ctx context.Context, id string) error {
	if b.net == nil {
		return nil
	}
	if err := b.net.Release(ctx, id); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	return nil
}

// networkIDs returns the sandboxes with network state on the host.
func (b *Backend) networkIDs() ([]string, error) {
	if b.net == nil {
		return nil, nil
	}
	return b.net.IDs()
}

// closeNetwork releases the host side, removing it if no sandbox of this
// data directory is attached any more.
func (b *Backend) closeNetwork() error {
	if b.net == nil {
		return nil
	}
	err := b.net.Close()
	b.net = nil
	return err
}
