package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/sbx-dev/sbx/internal/errdefs"
)

// On disk, under Config.StateDir:
//
//	leases/<addr>        the sandbox id holding addr; created O_EXCL, so an
//	                     address has one holder even across processes
//	sandboxes/<id>.json  the record of an attached sandbox
//
// A lease is taken before its record is written and dropped after the
// record is removed; a crash in between leaves a lease without a record,
// which Open sweeps.

// record is what survives a restart of sbxd about one sandbox's network.
type record struct {
	ID    string         `json:"id"`
	Addr  netip.Addr     `json:"addr"`
	Allow []netip.Prefix `json:"allow,omitempty"`
	Deny  []netip.Prefix `json:"deny,omitempty"`
}

func (r record) custom() bool { return len(r.Allow)+len(r.Deny) > 0 }

func (h *Host) leaseDir() string            { return filepath.Join(h.stateDir, "leases") }
func (h *Host) recordDir() string           { return filepath.Join(h.stateDir, "sandboxes") }
func (h *Host) recordPath(id string) string { return filepath.Join(h.recordDir(), id+".json") }

// lease takes a free address of the subnet for id, starting after the one
// handed out last so that an address is reused as late as possible.
func (h *Host) lease(id string) (netip.Addr, error) {
	first, n := h.hostRange()
	h.mu.Lock()
	start := h.next
	h.mu.Unlock()
	for i := range n {
		k := (start + i) % n
		a := offset(first, k)
		f, err := os.OpenFile(filepath.Join(h.leaseDir(), a.String()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return netip.Addr{}, err
		}
		_, err = f.WriteString(id)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(f.Name())
			return netip.Addr{}, err
		}
		h.mu.Lock()
		h.next = (k + 1) % n
		h.mu.Unlock()
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("%w: all %d addresses of the sandbox subnet %s are in use", errdefs.ErrCapacity, n, h.subnet)
}

// unlease drops the lease on a if id holds it.
func (h *Host) unlease(a netip.Addr, id string) error {
	p := filepath.Join(h.leaseDir(), a.String())
	holder, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if string(holder) != id {
		return nil
	}
	return os.Remove(p)
}

// hostRange returns the first sandbox address (after the gateway) and how
// many there are (up to the broadcast address).
func (h *Host) hostRange() (netip.Addr, int) {
	return offset(h.subnet.Addr(), 2), 1<<(32-h.subnet.Bits()) - 3
}

// offset returns the IPv4 address k after a.
func offset(a netip.Addr, k int) netip.Addr {
	v := u32(a) + uint32(k)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func (h *Host) writeRecord(r record) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := h.recordPath(r.ID) + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, h.recordPath(r.ID))
}

// readRecord returns the record of id, or fs.ErrNotExist.
func (h *Host) readRecord(id string) (record, error) {
	raw, err := os.ReadFile(h.recordPath(id))
	if err != nil {
		return record{}, err
	}
	var r record
	if err := json.Unmarshal(raw, &r); err != nil || r.ID != id || !r.Addr.Is4() {
		return record{}, fmt.Errorf("network record of %s is unusable (%v): %s", id, err, raw)
	}
	return r, nil
}

// records returns every readable record; unreadable ones are reported in
// the error and left for Release to remove.
func (h *Host) records() ([]record, error) {
	ids, err := h.recordIDs()
	if err != nil {
		return nil, err
	}
	var recs []record
	var errs []error
	for _, id := range ids {
		r, err := h.readRecord(id)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		recs = append(recs, r)
	}
	return recs, errors.Join(errs...)
}

func (h *Host) recordIDs() ([]string, error) {
	entries, err := os.ReadDir(h.recordDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		name := e.Name()
		if id, ok := strings.CutSuffix(name, ".json"); ok {
			ids = append(ids, id)
		} else if strings.HasSuffix(name, ".json.tmp") {
			_ = os.Remove(filepath.Join(h.recordDir(), name)) // a crash mid-write
		}
	}
	return ids, nil
}

// sweepLeases cleans up after the sandboxes whose leases have no record
// (a crash between lease and record, or before the background work of a
// Release was done) or a record naming another address, and frees the
// leases. Caller runs it before the janitor starts.
func (h *Host) sweepLeases() error {
	entries, err := os.ReadDir(h.leaseDir())
	if err != nil {
		return err
	}
	var orphans []record
	for _, e := range entries {
		p := filepath.Join(h.leaseDir(), e.Name())
		a, err := netip.ParseAddr(e.Name())
		if err != nil {
			_ = os.Remove(p)
			continue
		}
		holder, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		r, err := h.readRecord(string(holder))
		switch {
		case err == nil && r.Addr == a:
			// A live sandbox's.
		case err == nil || errors.Is(err, fs.ErrNotExist):
			// Its firewall chain, if any, went with the rebuilt table.
			orphans = append(orphans, record{ID: string(holder), Addr: a})
		}
	}
	if len(orphans) > 0 {
		h.clean(orphans)
	}
	return nil
}
