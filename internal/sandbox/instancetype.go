package sandbox

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sbx-dev/sbx/internal/backend"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// InstanceType is a named size: the limits a sandbox gets.
type InstanceType struct {
	Name      string
	Resources backend.Resources
}

const (
	mib = int64(1) << 20
	gib = int64(1) << 30
	gb  = int64(1000 * 1000 * 1000)
)

// InstanceTypes are the sizes offered, matching the hosted reference.
var InstanceTypes = []InstanceType{
	{"lite", backend.Resources{MilliCPU: 62, MemoryBytes: 256 * mib, DiskBytes: 2 * gb, Pids: 256}},
	{"basic", backend.Resources{MilliCPU: 250, MemoryBytes: 1 * gib, DiskBytes: 4 * gb, Pids: 512}},
	{"standard-1", backend.Resources{MilliCPU: 500, MemoryBytes: 4 * gib, DiskBytes: 8 * gb, Pids: 1024}},
	{"standard-2", backend.Resources{MilliCPU: 1000, MemoryBytes: 6 * gib, DiskBytes: 12 * gb, Pids: 2048}},
	{"standard-3", backend.Resources{MilliCPU: 2000, MemoryBytes: 8 * gib, DiskBytes: 16 * gb, Pids: 4096}},
	{"standard-4", backend.Resources{MilliCPU: 4000, MemoryBytes: 12 * gib, DiskBytes: 20 * gb, Pids: 4096}},
}

// DefaultInstanceType is used when a sandbox names none.
const DefaultInstanceType = "standard-1"

// LookupInstanceType returns the named instance type or an error wrapping
// errdefs.ErrInvalidInstanceType that lists the valid names.
func LookupInstanceType(name string) (InstanceType, error) {
	i := slices.IndexFunc(InstanceTypes, func(t InstanceType) bool { return t.Name == name })
	if i < 0 {
		names := make([]string, len(InstanceTypes))
		for j, t := range InstanceTypes {
			names[j] = t.Name
		}
		return InstanceType{}, fmt.Errorf("%w: %q is not an instance type; use one of %s",
			errdefs.ErrInvalidInstanceType, name, strings.Join(names, ", "))
	}
	return InstanceTypes[i], nil
}
