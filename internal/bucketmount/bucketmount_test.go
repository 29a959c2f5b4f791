package bucketmount

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/blob"
)

// TestPlanSync checks what a sync does to each side, in particular that a
// read-only mount puts back every local change and never touches the
// bucket.
func TestPlanSync(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	later := t0.Add(90 * time.Second).Add(123 * time.Nanosecond)
	file := func(size int64, mtime time.Time, mode string) api.FileInfo {
		return api.FileInfo{Type: api.FileTypeFile, Size: size, ModifiedAt: mtime, Mode: mode}
	}
	dir := api.FileInfo{Type: api.FileTypeDirectory, Mode: "0755"}
	// After the last sync both sides held a.txt and sub/b.txt, 1 byte each.
	base := func() (map[string]fileState, map[string]api.FileInfo, map[string]blob.Info) {
		st := fileState{size: 1, mtime: t0, remoteSize: 1, remoteMtime: t0}
		state := map[string]fileState{"a.txt": st, "sub/b.txt": st}
		local := map[string]api.FileInfo{
			"a.txt": file(1, t0, "0644"), "sub": dir, "sub/b.txt": file(1, t0, "0644"),
		}
		remote := map[string]blob.Info{
			"a.txt":     {Key: "p/a.txt", Size: 1, ModTime: t0},
			"sub/b.txt": {Key: "p/sub/b.txt", Size: 1, ModTime: t0},
		}
		return state, local, remote
	}
	type want struct {
		upload, deleteObj, download, remove, conflicts []string
		reverted                                       int
	}
	for _, tc := range []struct {
		name     string
		readOnly bool
		edit     func(local map[string]api.FileInfo, remote map[string]blob.Info)
		want     want
	}{
		{"ro unchanged", true, func(map[string]api.FileInfo, map[string]blob.Info) {}, want{}},
		{"ro edited file is downloaded again", true, func(l map[string]api.FileInfo, _ map[string]blob.Info) {
			l["a.txt"] = file(6, later, "0644")
		}, want{download: []string{"a.txt"}, reverted: 1}},
		{"ro same-size edit is seen by its mtime", true, func(l map[string]api.FileInfo, _ map[string]blob.Info) {
			l["a.txt"] = file(1, later, "0644")
		}, want{download: []string{"a.txt"}, reverted: 1}},
		{"ro chmod is reverted", true, func(l map[string]api.FileInfo, _ map[string]blob.Info) {
			l["a.txt"] = file(1, t0, "0755")
		}, want{download: []string{"a.txt"}, reverted: 1}},
		{"ro deleted file is downloaded again", true, func(l map[string]api.FileInfo, _ map[string]blob.Info) {
			delete(l, "sub/b.txt")
		}, want{download: []string{"sub/b.txt"}, reverted: 1}},
		{"ro deleted directory is downloaded again", true, func(l map[string]api.FileInfo, _ map[string]blob.Info) {
			delete(l, "sub/b.txt")
			delete(l, "sub")
		}, want{download: []string{"sub/b.txt"}, reverted: 1}},
		{"ro new file is removed", true, func(l map[string]api.FileInfo, _ map[string]blob.Info) {
			l["top.txt"] = file(6, later, "0644")
		}, want{remove: []string{"top.txt"}, reverted: 1}},
		{"ro new directory tree, symlink and fifo are removed", true, func(l map[string]api.FileInfo, _ map[string]blob.Info) {
			l["new"] = dir
			l["new/n.txt"] = file(3, later, "0644")
			l["empty"] = dir
			l["sub/link"] = api.FileInfo{Type: api.FileTypeSymlink, SymlinkTarget: "/etc"}
			l["fifo"] = api.FileInfo{Type: api.FileTypeOther}
		}, want{remove: []string{"empty", "fifo", "new", "new/n.txt", "sub/link"}, reverted: 5}},
		{"ro file replaced by a directory", true, func(l map[string]api.FileInfo, _ map[string]blob.Info) {
			l["a.txt"] = dir
			l["a.txt/x"] = file(1, later, "0644")
		}, want{download: []string{"a.txt"}, remove: []string{"a.txt", "a.txt/x"}, reverted: 2}},
		{"ro directory replaced by a symlink", true, func(l map[string]api.FileInfo, _ map[string]blob.Info) {
			delete(l, "sub/b.txt")
			l["sub"] = api.FileInfo{Type: api.FileTypeSymlink, SymlinkTarget: "."}
		}, want{download: []string{"sub/b.txt"}, remove: []string{"sub"}, reverted: 2}},
		{"ro bucket changes come down without counting as reverts", true, func(_ map[string]api.FileInfo, r map[string]blob.Info) {
			r["a.txt"] = blob.Info{Key: "p/a.txt", Size: 2, ModTime: later}
			r["c.txt"] = blob.Info{Key: "p/c.txt", Size: 2, ModTime: later}
			delete(r, "sub/b.txt")
		}, want{download: []string{"a.txt", "c.txt"}, remove: []string{"sub/b.txt"}}},
		{"ro conflict: the bucket wins", true, func(l map[string]api.FileInfo, r map[string]blob.Info) {
			l["a.txt"] = file(5, later, "0644")
			r["a.txt"] = blob.Info{Key: "p/a.txt", Size: 2, ModTime: later}
		}, want{download: []string{"a.txt"}, conflicts: []string{"a.txt"}, reverted: 1}},
		{"ro deleted on both sides", true, func(l map[string]api.FileInfo, r map[string]blob.Info) {
			delete(l, "a.txt")
			delete(r, "a.txt")
		}, want{}},

		{"rw edits go up", false, func(l map[string]api.FileInfo, _ map[string]blob.Info) {
			l["a.txt"] = file(6, later, "0644")
			l["new.txt"] = file(6, later, "0644")
			delete(l, "sub/b.txt")
		}, want{upload: []string{"a.txt", "new.txt"}, deleteObj: []string{"sub/b.txt"}}},
		{"rw chmod, symlinks and empty directories stay local", false, func(l map[string]api.FileInfo, _ map[string]blob.Info) {
			l["a.txt"] = file(1, t0, "0755")
			l["link"] = api.FileInfo{Type: api.FileTypeSymlink, SymlinkTarget: "a.txt"}
			l["empty"] = dir
		}, want{}},
		{"rw conflict: the sandbox wins", false, func(l map[string]api.FileInfo, r map[string]blob.Info) {
			l["a.txt"] = file(5, later, "0644")
			r["a.txt"] = blob.Info{Key: "p/a.txt", Size: 2, ModTime: later}
		}, want{upload: []string{"a.txt"}, conflicts: []string{"a.txt"}}},
		{"rw bucket changes come down", false, func(_ map[string]api.FileInfo, r map[string]blob.Info) {
			r["c.txt"] = blob.Info{Key: "p/c.txt", Size: 2, ModTime: later}
			delete(r, "sub/b.txt")
		}, want{download: []string{"c.txt"}, remove: []string{"sub/b.txt"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, local, remote := base()
			tc.edit(local, remote)
			p := planSync(tc.readOnly, state, local, remote)
			got := want{upload: p.upload, deleteObj: p.deleteObj, download: slices.Sorted(maps.Keys(p.download)),
				remove: p.remove, conflicts: p.conflicts, reverted: p.reverted}
			for _, c := range []struct {
				what      string
				got, want []string
			}{
				{"uploads", got.upload, tc.want.upload},
				{"bucket deletions", got.deleteObj, tc.want.deleteObj},
				{"downloads", got.download, tc.want.download},
				{"removals", got.remove, tc.want.remove},
				{"conflicts", got.conflicts, tc.want.conflicts},
			} {
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
				}
			}
			if got.reverted != tc.want.reverted {
				t.Errorf("reverted = %d, want %d", got.reverted, tc.want.reverted)
			}
			if tc.readOnly && (len(p.upload) > 0 || len(p.deleteObj) > 0) {
				t.Errorf("a read-only mount writes to the bucket: %+v", p)
			}
			for rel, info := range p.download {
				if info.Key != remote[rel].Key || info.Size != remote[rel].Size || !info.ModTime.Equal(remote[rel].ModTime) {
					t.Errorf("download %s = %+v, want the listed object %+v", rel, info, remote[rel])
				}
			}
		})
	}
}

// TestPlanSyncConverges: after a read-only sync's plan is carried out the
// next plan is empty, so a sync reports reverts only once per change.
func TestPlanSyncConverges(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	remote := map[string]blob.Info{"a.txt": {Key: "a.txt", Size: 1, ModTime: t0}}
	state := map[string]fileState{}
	local := map[string]api.FileInfo{"stray": {Type: api.FileTypeFile, Size: 9, ModifiedAt: t0.Add(time.Hour), Mode: "0644"}}
	p := planSync(true, state, local, remote)
	if p.reverted != 1 || !slices.Equal(p.remove, []string{"stray"}) || len(p.download) != 1 {
		t.Fatalf("first plan %+v", p)
	}
	// What sync and download do with the plan.
	delete(local, "stray")
	local["a.txt"] = api.FileInfo{Type: api.FileTypeFile, Size: 1, ModifiedAt: t0, Mode: api.FormatMode(downloadMode)}
	state["a.txt"] = fileState{size: 1, mtime: t0, remoteSize: 1, remoteMtime: t0}
	p = planSync(true, state, local, remote)
	if p.reverted != 0 || len(p.remove) != 0 || len(p.download) != 0 || len(p.conflicts) != 0 {
		t.Errorf("second plan %+v, want nothing to do", p)
	}
}
