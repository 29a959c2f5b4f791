package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sbx-dev/sbx/internal/errdefs"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"default", true},
		{"python", true},
		{"a", true},
		{"0", true},
		{"py3.11_slim-2", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"Default", false},
		{".tmp-default-1", false},
		{"-x", false},
		{"_x", false},
		{"a/b", false},
		{"..", false},
		{"a b", false},
		{"é", false},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidArgument", tt.name, err)
		}
	}
}

// fakeBuild is a populate function that writes a marker file, or fails, or
// waits for cancellation, as the test says.
type fakeBuild struct {
	calls   atomic.Int32
	marker  string // content of /etc/marker
	fail    error
	block   bool          // wait for ctx to be cancelled
	started chan struct{} // closed when a blocking build is running
}

func (f *fakeBuild) populate(ctx context.Context, root string, p *plan) error {
	f.calls.Add(1)
	p.rep.start(stepBootstrap, "fake")
	for _, d := range []string{"etc", "workspace", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/marker"), []byte(f.marker), 0o644); err != nil {
		return err
	}
	// A hard-linked file counts once in the size.
	if err := os.WriteFile(filepath.Join(root, "usr/bin/tool"), bytes.Repeat([]byte("x"), 64<<10), 0o755); err != nil {
		return err
	}
	if err := os.Link(filepath.Join(root, "usr/bin/tool"), filepath.Join(root, "usr/bin/tool2")); err != nil {
		return err
	}
	p.log.line("fake: unpacking things")
	if f.block {
		close(f.started)
		<-ctx.Done()
		return ctx.Err()
	}
	if f.fail != nil {
		p.log.line("E: fake failure detail")
		return f.fail
	}
	p.rep.finish(nil)
	return nil
}

func newTestStore(t *testing.T, f *fakeBuild) *Store {
	t.Helper()
	return &Store{Dir: t.TempDir(), populate: f.populate}
}

// testOpts skips the host's apt sources, which unit tests must not depend on.
func testOpts(progress *bytes.Buffer) BuildOptions {
	o := BuildOptions{Mirror: "http://mirror.invalid/debian", SecurityMirror: "none"}
	if progress != nil {
		o.Progress = progress
	}
	return o
}

func marker(t *testing.T, s *Store, name string) string {
	t.Helper()
	root, err := s.Path(name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "etc/marker"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// leftovers lists the build-private entries in the store directory.
func leftovers(t *testing.T, s *Store) []string {
	t.Helper()
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, ".tmp-") || strings.HasPrefix(n, ".old-") || strings.HasPrefix(n, ".rm-") {
			out = append(out, n)
		}
	}
	return out
}

func TestPathNotBuilt(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	_, err := s.Path("python")
	if !errors.Is(err, errdefs.ErrImageNotFound) {
		t.Fatalf("Path of an image not built: err = %v, want ErrImageNotFound", err)
	}
	if !strings.Contains(err.Error(), `sbxd image build python`) {
		t.Errorf("err = %q, want it to say how to build the image", err)
	}
	if _, err := s.Path("../etc"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Path(../etc): err = %v, want ErrInvalidArgument", err)
	}
	// A directory without image.json (someone's junk, or a crash before
	// the rename in older layouts) is not an image.
	if err := os.MkdirAll(filepath.Join(s.Dir, "python", "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Path("python"); !errors.Is(err, errdefs.ErrImageNotFound) {
		t.Errorf("Path of a directory without image.json: err = %v", err)
	}
	if l, err := s.List(); err != nil || len(l) != 0 {
		t.Errorf("List = %v, %v; want nothing", l, err)
	}
}

func TestBuildInstallsAndIsIdempotent(t *testing.T) {
	f := &fakeBuild{marker: "one"}
	s := newTestStore(t, f)
	var out bytes.Buffer
	info, err := s.Build(context.Background(), "default", testOpts(&out))
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out.String())
	}
	rec, _ := LookupRecipe("default")
	if info.Name != "default" || info.Recipe != "default" || info.RecipeHash != rec.Hash() || info.Suite != "bookworm" ||
		info.Mirror != "http://mirror.invalid/debian" || info.Created.IsZero() || len(info.Packages) != len(rec.Packages) {
		t.Errorf("Info = %+v", info)
	}
	if info.SizeBytes < 64<<10 || info.SizeBytes >= 128<<10+64<<10 {
		t.Errorf("SizeBytes = %d, want the 64 KiB file counted once plus directories", info.SizeBytes)
	}
	root, err := s.Path("default")
	if err != nil || info.Rootfs != root || root != filepath.Join(s.Dir, "default", "rootfs") {
		t.Errorf("Path = %q, %v; Info.Rootfs = %q", root, err, info.Rootfs)
	}
	if fi, err := os.Stat(filepath.Join(s.Dir, "default")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("image directory mode: %v, %v; want 0755", fi, err)
	}
	if got := marker(t, s, "default"); got != "one" {
		t.Errorf("marker = %q", got)
	}
	for _, want := range []string{"[1/5] debootstrap minbase (fake) ...", "[5/5] install image done in", "image default built in"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, out.String())
		}
	}
	if log, err := os.ReadFile(filepath.Join(s.Dir, ".logs", "default.log")); err != nil || !strings.Contains(string(log), "fake: unpacking things") {
		t.Errorf("build log: %v\n%s", err, log)
	}

	// The same recipe again: nothing is built.
	out.Reset()
	f.marker = "two"
	again, err := s.Build(context.Background(), "default", testOpts(&out))
	if err != nil || f.calls.Load() != 1 {
		t.Fatalf("second Build: err %v, populate called %d times, want 1", err, f.calls.Load())
	}
	if !strings.Contains(out.String(), "image default is up to date") || again.Created != info.Created {
		t.Errorf("second Build said %q, returned %+v", out.String(), again)
	}

	// --force rebuilds and replaces.
	opts := testOpts(&out)
	opts.Force = true
	if _, err := s.Build(context.Background(), "default", opts); err != nil {
		t.Fatal(err)
	}
	if got := marker(t, s, "default"); got != "two" || f.calls.Load() != 2 {
		t.Errorf("after --force: marker %q, %d builds", got, f.calls.Load())
	}
	if l := leftovers(t, s); len(l) != 0 {
		t.Errorf("leftovers after builds: %v", l)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].Name != "default" || list[0].Rootfs != root {
		t.Errorf("List = %+v, %v", list, err)
	}
}

func TestBuildRebuildsWhenRecipeChanged(t *testing.T) {
	f := &fakeBuild{marker: "one"}
	s := newTestStore(t, f)
	if _, err := s.Build(context.Background(), "default", testOpts(nil)); err != nil {
		t.Fatal(err)
	}
	// Simulate an image built by an older recipe.
	p := filepath.Join(s.Dir, "default", infoFile)
	b, _ := os.ReadFile(p)
	if err := os.WriteFile(p, bytes.Replace(b, []byte(`"sha256:`), []byte(`"sha256:0`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	f.marker = "two"
	if _, err := s.Build(context.Background(), "default", testOpts(&out)); err != nil {
		t.Fatal(err)
	}
	if f.calls.Load() != 2 || marker(t, s, "default") != "two" || !strings.Contains(out.String(), "built from another recipe") {
		t.Errorf("recipe change: %d builds, output %q", f.calls.Load(), out.String())
	}
}

func TestBuildFailureLeavesNothing(t *testing.T) {
	f := &fakeBuild{marker: "one"}
	s := newTestStore(t, f)
	if _, err := s.Build(context.Background(), "default", testOpts(nil)); err != nil {
		t.Fatal(err)
	}
	f.fail = errors.New("apt-get install: exit status 100")
	f.marker = "broken"
	var out bytes.Buffer
	opts := testOpts(&out)
	opts.Force = true
	_, err := s.Build(context.Background(), "default", opts)
	logPath := filepath.Join(s.Dir, ".logs", "default.log")
	if err == nil || !strings.Contains(err.Error(), "exit status 100") || !strings.Contains(err.Error(), logPath) {
		t.Fatalf("err = %v, want the cause and the log path", err)
	}
	if !strings.Contains(out.String(), "E: fake failure detail") || !strings.Contains(out.String(), "failed after") {
		t.Errorf("progress should end with the log's tail:\n%s", out.String())
	}
	if got := marker(t, s, "default"); got != "one" {
		t.Errorf("a failed --force rebuild changed the image: marker %q", got)
	}
	if l := leftovers(t, s); len(l) != 0 {
		t.Errorf("leftovers after a failed build: %v", l)
	}

	// A failed first build leaves no image at all.
	if _, err := s.Build(context.Background(), "python", testOpts(nil)); err == nil {
		t.Fatal("want an error")
	}
	if _, err := s.Path("python"); !errors.Is(err, errdefs.ErrImageNotFound) {
		t.Errorf("Path after a failed build: %v", err)
	}
}

func TestBuildInterrupted(t *testing.T) {
	f := &fakeBuild{block: true, started: make(chan struct{})}
	s := newTestStore(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := s.Build(ctx, "default", testOpts(nil))
		errc <- err
	}()
	<-f.started
	if l := leftovers(t, s); len(l) != 1 || !strings.HasPrefix(l[0], ".tmp-default-") {
		t.Errorf("during the build: %v, want one .tmp-default-*", l)
	}
	if _, err := s.Path("default"); !errors.Is(err, errdefs.ErrImageNotFound) {
		t.Errorf("Path during the first build: %v, want not found", err)
	}
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("err = %v, want an interruption wrapping context.Canceled", err)
	}
	if l := leftovers(t, s); len(l) != 0 {
		t.Errorf("leftovers after an interrupted build: %v", l)
	}
	if _, err := s.Path("default"); !errors.Is(err, errdefs.ErrImageNotFound) {
		t.Errorf("Path after an interrupted build: %v", err)
	}
}

func TestBuildCollectsCrashLeftovers(t *testing.T) {
	f := &fakeBuild{marker: "one"}
	s := newTestStore(t, f)
	// What a build killed with SIGKILL, or a crash during rm, leaves.
	for _, d := range []string{".tmp-default-12345/rootfs/usr/bin", ".rm-python-777/image/rootfs", ".old-default-20260101T000000.000000000/rootfs"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.Dir, ".tmp-default-12345", infoFile), []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := s.List(); err != nil || len(l) != 0 {
		t.Errorf("List sees leftovers: %+v, %v", l, err)
	}
	var out bytes.Buffer
	if _, err := s.Build(context.Background(), "other", BuildOptions{Recipe: "default", Mirror: "http://mirror.invalid/debian", SecurityMirror: "none", Progress: &out}); err != nil {
		t.Fatal(err)
	}
	if l := leftovers(t, s); len(l) != 0 {
		t.Errorf("leftovers not collected: %v\n%s", l, out.String())
	}
	if !strings.Contains(out.String(), "removed leftover") {
		t.Errorf("progress does not mention the cleanup:\n%s", out.String())
	}
}

func TestConcurrentBuildsBuildOnce(t *testing.T) {
	f := &fakeBuild{marker: "one"}
	s := newTestStore(t, f)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.Build(context.Background(), "default", testOpts(nil))
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("4 concurrent builds of one image ran populate %d times, want 1", n)
	}
}

func TestBuildBadInput(t *testing.T) {
	f := &fakeBuild{}
	s := newTestStore(t, f)
	for _, tc := range []struct {
		name, recipe string
		want         string
	}{
		{"Bad Name", "", "invalid image name"},
		{"ruby", "", "known recipes are default, python"},
		{"mine", "nope", `unknown image recipe "nope"`},
	} {
		_, err := s.Build(context.Background(), tc.name, BuildOptions{Recipe: tc.recipe, Mirror: "http://mirror.invalid/debian"})
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Build(%q, recipe %q) = %v, want ErrInvalidArgument with %q", tc.name, tc.recipe, err, tc.want)
		}
	}
	if f.calls.Load() != 0 {
		t.Error("bad input reached the builder")
	}
}

func TestRemove(t *testing.T) {
	f := &fakeBuild{marker: "one"}
	s := newTestStore(t, f)
	ctx := context.Background()
	if err := s.Remove(ctx, "default"); !errors.Is(err, errdefs.ErrImageNotFound) {
		t.Errorf("Remove of an image not built: %v", err)
	}
	if _, err := s.Build(ctx, "default", testOpts(nil)); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Path("default"); !errors.Is(err, errdefs.ErrImageNotFound) {
		t.Errorf("Path after Remove: %v", err)
	}
	if l := leftovers(t, s); len(l) != 0 {
		t.Errorf("leftovers after Remove: %v", l)
	}
	if err := s.Remove(ctx, "../x"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Remove(../x): %v", err)
	}
}

func TestReporterPlain(t *testing.T) {
	var out bytes.Buffer
	r := newReporter(&out, []string{"one", "two"}, []float64{1, 3})
	r.start(0, "detail")
	r.update(0.5, "half")
	if got := r.overallLocked(); got != 0.125 {
		t.Errorf("overall after half of step 1 = %v, want 0.125", got)
	}
	r.update(0.2, "") // progress never goes backwards
	if got := r.overallLocked(); got != 0.125 {
		t.Errorf("overall went backwards: %v", got)
	}
	r.finish(nil)
	r.start(1, "")
	r.finish(errors.New("boom"))
	r.close()
	r.close()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{"[1/2] one (detail) ...", "[1/2] one done in ", "[2/2] two ...", "[2/2] two failed after "}
	if len(lines) != len(want) {
		t.Fatalf("output:\n%s", out.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], w)
		}
	}
	if strings.Contains(out.String(), "\r") || strings.Contains(out.String(), "\x1b") {
		t.Error("plain output contains terminal control sequences")
	}
}

func TestLineWriter(t *testing.T) {
	var got []string
	w := &lineWriter{fn: func(s string) { got = append(got, s) }}
	for _, chunk := range []string{"I: Retr", "ieving a 1\nI: Valid", "ating a 1\n\n", "Progress: 10%\rProgress: 20%\r", "tail"} {
		w.Write([]byte(chunk))
	}
	w.flush()
	want := []string{"I: Retrieving a 1", "I: Validating a 1", "Progress: 10%", "Progress: 20%", "tail"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines = %q, want %q", got, want)
	}
}

func TestDebootstrapParserProgresses(t *testing.T) {
	r := newReporter(nil, stepTitles, stepWeights)
	defer r.close()
	r.start(stepBootstrap, "")
	d := newDebootstrapParser(r)
	last := -1.0
	check := func(line string) {
		d.line(line)
		if r.frac < last {
			t.Fatalf("after %q progress fell from %v to %v", line, last, r.frac)
		}
		last = r.frac
	}
	check("I: Retrieving InRelease")
	if r.frac != 0 {
		t.Errorf("release files count as packages: %v", r.frac)
	}
	const n = 60
	for _, verb := range []string{"Retrieving", "Validating", "Extracting", "Unpacking", "Configuring"} {
		for i := range n {
			check("I: " + verb + " pkg" + string(rune('a'+i%26)) + " 1.0")
		}
	}
	if r.frac < 0.99 {
		t.Errorf("progress at the end = %v, want ~1", r.frac)
	}
}
