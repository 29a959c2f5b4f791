package bench

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
	"github.com/sbx-dev/sbx/internal/integration"
	"github.com/sbx-dev/sbx/internal/network/nettest"
)

// egressDownload is the size of one download from the test internet.
const egressDownload = 256 << 20

// BenchmarkEgressThroughput downloads egressDownload bytes over HTTP from a
// host of the test internet (a network namespace behind a veth, see
// package nettest), with curl: from inside a sandbox, through its veth,
// the bridge, forwarding, the firewall and NAT; and, as the same-run
// baseline, from the machine itself, which reaches the host over the same
// veth without the sandbox's path. Figures are curl's own transfer rates.
//
// The sandbox runs as standard-4, whose CPU quota exceeds this machine, so
// that the figure is the network path's; the default standard-1 (half a
// core for curl and its share of the kernel's work) is reported too.
func BenchmarkEgressThroughput(b *testing.B) {
	integration.RequireRoot(b)
	in := nettest.New(b)
	d := integration.StartDaemon(b, "--log-level", "warn", "--dns", in.Public.String())
	ctx := context.Background()
	url := fmt.Sprintf("%sbytes?n=%d", nettest.URL(in.Public), egressDownload)
	curl := "curl -sS -o /dev/null -w '%{size_download} %{speed_download}' " + url
	big, small := d.Client.Sandbox("egress-big"), d.Client.Sandbox("egress-default")
	if _, err := big.Create(ctx, &api.CreateSandboxRequest{InstanceType: "standard-4"}); err != nil {
		b.Fatal(err)
	}
	if _, err := small.Create(ctx, nil); err != nil {
		b.Fatal(err)
	}
	var inBig, inSmall, onHost []float64 // MiB/s
	b.ResetTimer()
	for range b.N {
		for _, r := range []struct {
			sb interface {
				Exec(context.Context, string, ...client.ExecOption) (*api.ExecResult, error)
			}
			out *[]float64
		}{{big, &inBig}, {small, &inSmall}} {
			res, err := r.sb.Exec(ctx, curl)
			if err != nil || res.ExitCode != 0 {
				b.Fatalf("curl in a sandbox: %v %+v", err, res)
			}
			*r.out = append(*r.out, rate(b, res.Stdout))
		}
		out, err := exec.Command("sh", "-c", curl).Output()
		if err != nil {
			b.Fatalf("curl on the host: %v", err)
		}
		onHost = append(onHost, rate(b, string(out)))
	}
	b.StopTimer()
	b.ReportMetric(median(inBig), "sandbox-MiB/s")
	b.ReportMetric(median(inSmall), "standard1-MiB/s")
	b.ReportMetric(median(onHost), "host-MiB/s")
	b.ReportMetric(median(inBig)/median(onHost), "ratio")
	b.ReportMetric(0, "ns/op")
}

// rate parses curl's "SIZE SPEED" and returns MiB/s, checking the size.
func rate(b *testing.B, out string) float64 {
	f := strings.Fields(out)
	if len(f) != 2 {
		b.Fatalf("curl wrote %q", out)
	}
	if n, _ := strconv.ParseInt(f[0], 10, 64); n != egressDownload {
		b.Fatalf("downloaded %s bytes, want %d", f[0], egressDownload)
	}
	bps, err := strconv.ParseFloat(f[1], 64)
	if err != nil {
		b.Fatal(err)
	}
	return bps / (1 << 20)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkColdStartNetwork is create + first exec of `true` over HTTP, as
// BenchmarkColdStart, for three network policies in turn within one run:
// "none" (the baseline: loopback only), the default "internet" (a veth on
// the bridge, set up by netlink while the agent starts), and an allow list
// (the same plus one nft transaction for the sandbox's own chain).
func BenchmarkColdStartNetwork(b *testing.B) {
	integration.RequireRoot(b)
	in := nettest.New(b)
	d := integration.StartDaemon(b, "--log-level", "warn", "--dns", in.Public.String())
	ctx := context.Background()
	policies := []struct {
		name string
		net  *api.Network
	}{
		{"none", &api.Network{Mode: api.NetworkNone}},
		{"internet", nil},
		{"allowlist", &api.Network{Allow: []string{"203.0.113.0/24", "198.51.100.0/24"}}},
	}
	lat := make([]latencies, len(policies))
	b.ResetTimer()
	for i := range b.N {
		for k, p := range policies {
			sb := d.Client.Sandbox(fmt.Sprintf("coldnet-%s-%d", p.name, i))
			t0 := time.Now()
			if _, err := sb.Create(ctx, &api.CreateSandboxRequest{Network: p.net}); err != nil {
				b.Fatal(err)
			}
			if _, err := sb.Exec(ctx, "true"); err != nil {
				b.Fatal(err)
			}
			lat[k] = append(lat[k], time.Since(t0))
			b.StopTimer()
			if err := sb.Destroy(ctx); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.StopTimer()
	for k, p := range policies {
		s := slices.Clone(lat[k])
		slices.Sort(s)
		ms := func(q float64) float64 { return float64(s[int(float64(len(s)-1)*q)].Microseconds()) / 1000 }
		b.ReportMetric(ms(0.50), p.name+"-p50-ms")
		b.ReportMetric(ms(0.95), p.name+"-p95-ms")
	}
	b.ReportMetric(0, "ns/op")
}
