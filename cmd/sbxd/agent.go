package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/sbx-dev/sbx/internal/backend"
)

// Limits of the agent settings: beyond them a setting is a typo, not a
// choice. Output is held in the sandbox's memory, which is counted against
// its instance type; each pooled interpreter is a process per language.
const (
	maxAgentCap        = 1 << 30
	maxInterpreterPool = 16
)

// agentOptions tune the agent inside every sandbox. The defaults are the
// agent's own.
type agentOptions struct {
	ExecOutputCap   byteSize `json:"exec-output-cap"`
	ProcessLogCap   byteSize `json:"process-log-cap"`
	InterpreterPool int      `json:"interpreter-pool"`
}

func (o *agentOptions) addFlags(f *pflag.FlagSet) {
	o.ExecOutputCap, o.ProcessLogCap = 16<<20, 1<<20
	f.Var(&o.ExecOutputCap, "exec-output-cap",
		"most bytes per output stream a non-streaming exec returns; the rest is dropped and flagged (1000, 512KiB, 16MiB)")
	f.Var(&o.ProcessLogCap, "process-log-cap",
		"most bytes per output stream kept of a background process's log; older output is dropped")
	f.IntVar(&o.InterpreterPool, "interpreter-pool", 1,
		"interpreters per language kept started for new code contexts once the language is used (0: start each on demand)")
}

// backendOptions checks the agent flags and returns them as the backend
// takes them.
func (o *agentOptions) backendOptions() (backend.AgentOptions, error) {
	for _, c := range []struct {
		flag string
		v    byteSize
	}{{"exec-output-cap", o.ExecOutputCap}, {"process-log-cap", o.ProcessLogCap}} {
		if c.v < 1 || c.v > maxAgentCap {
			return backend.AgentOptions{}, fmt.Errorf("--%s %s: use a size from 1 byte to %s, such as 1MiB",
				c.flag, c.v, byteSize(maxAgentCap))
		}
	}
	if o.InterpreterPool < 0 || o.InterpreterPool > maxInterpreterPool {
		return backend.AgentOptions{}, fmt.Errorf("--interpreter-pool %d: use 0 (no pre-started interpreters) to %d",
			o.InterpreterPool, maxInterpreterPool)
	}
	pool := o.InterpreterPool
	if pool == 0 {
		pool = -1 // the backend's 0 is the agent's default
	}
	return backend.AgentOptions{OutputCap: int64(o.ExecOutputCap), ProcessLogCap: int64(o.ProcessLogCap), InterpreterPool: pool}, nil
}

// byteSize is a flag of a number of bytes, written as a plain number or
// with a binary unit: 512KiB, 16MiB, 1GiB (K, M and G mean the same).
type byteSize int64

// sizeUnits are the units parseSize accepts, largest first.
var sizeUnits = []struct {
	name  string // as String writes it
	short string // the same unit, abbreviated
	n     int64
}{
	{"GiB", "G", 1 << 30},
	{"MiB", "M", 1 << 20},
	{"KiB", "K", 1 << 10},
	{"B", "", 1},
}

func (s *byteSize) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = byteSize(n)
	return nil
}

func (s byteSize) String() string {
	for _, u := range sizeUnits {
		if s != 0 && int64(s)%u.n == 0 && u.n > 1 {
			return strconv.FormatInt(int64(s)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

func (s *byteSize) Type() string { return "size" }

// parseSize parses a byteSize. Decimal units (KB, MB) are refused rather
// than guessed at.
func parseSize(v string) (int64, error) {
	bad := fmt.Errorf("%q is not a size: use bytes (1000) or a binary unit (512KiB, 16MiB, 1GiB)", v)
	t := strings.TrimSpace(v)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, bad
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is too large", v) // only digits: out of range
	}
	unit := strings.TrimSpace(t[i:])
	for _, u := range sizeUnits {
		if !strings.EqualFold(unit, u.name) && !strings.EqualFold(unit, u.short) {
			continue
		}
		if n > math.MaxInt64/u.n {
			return 0, fmt.Errorf("%q is too large", v)
		}
		return n * u.n, nil
	}
	return 0, bad
}
