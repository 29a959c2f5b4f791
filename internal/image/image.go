// Package image builds and stores the root filesystems that sandboxes run
// on: Debian trees made with debootstrap from a recipe (a name and a list of
// packages), kept under one directory as
//
//	<dir>/<name>/rootfs       the tree, owned by host root, used read-only
//	<dir>/<name>/image.json   Info: recipe hash, packages, size, time
//	<dir>/.logs/<name>.log    the full log of the last build of <name>
//
// An image directory appears only complete: a build happens in
// <dir>/.tmp-<name>-<random> and is renamed into place at the end, and the
// leftovers of an interrupted build are deleted by the next one. Mounts a
// build needs (/proc, /dev in the chroot) exist only in a private mount
// namespace, so they never outlive the build, even when sbxd is killed.
package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/sbx-dev/sbx/internal/errdefs"
)

// Info describes a built image; it is stored as <dir>/<name>/image.json.
type Info struct {
	Name       string   `json:"name"`
	Recipe     string   `json:"recipe"`
	RecipeHash string   `json:"recipeHash"`
	Suite      string   `json:"suite"`
	Packages   []string `json:"packages"`
	// Mirror is the archive the image was built from.
	Mirror       string    `json:"mirror"`
	Created      time.Time `json:"created"`
	SizeBytes    int64     `json:"sizeBytes"`
	BuildSeconds float64   `json:"buildSeconds"`
	// Rootfs is the host path of the tree. It is not stored (the directory
	// may move); List and Build fill it in.
	Rootfs string `json:"rootfs,omitempty"`
}

const infoFile = "image.json"

// Store is a directory of images. The zero value is not usable: Dir must
// be set. Path and List may be called at any time, also during a build;
// Build and Remove serialize with each other, across processes, through a
// lock file in Dir.
type Store struct {
	// Dir is the images directory, normally <data dir>/images.
	Dir string

	// populate builds a root filesystem into root; nil means
	// debianPopulate. Tests replace it to simulate failing and interrupted
	// builds.
	populate func(ctx context.Context, root string, p *plan) error
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidateName checks an image name: 1 to 63 characters of a-z, 0-9, '.',
// '_' and '-', starting with a letter or digit.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: invalid image name %q: use 1-63 characters a-z, 0-9, '.', '_' or '-', starting with a letter or digit", errdefs.ErrInvalidArgument, name)
	}
	return nil
}

// dir returns the absolute images directory, so that the paths handed out
// (and used as overlay lower layers) match what the in-use checks look for.
func (s *Store) dir() (string, error) {
	if s.Dir == "" {
		return "", errors.New("image store has no directory")
	}
	return filepath.Abs(s.Dir)
}

// Path returns the root filesystem of the built image name. An image that
// is not built is an error wrapping errdefs.ErrImageNotFound.
func (s *Store) Path(name string) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	dir, err := s.dir()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, name, infoFile)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", notBuilt(name)
		}
		return "", fmt.Errorf("image %s: %w", name, err)
	}
	return filepath.Join(dir, name, "rootfs"), nil
}

func notBuilt(name string) error {
	return fmt.Errorf("%w: image %q is not built: run \"sbxd image build %s\"", errdefs.ErrImageNotFound, name, name)
}

// Get returns the Info of the built image name, or an error wrapping
// errdefs.ErrImageNotFound.
func (s *Store) Get(name string) (Info, error) {
	if err := ValidateName(name); err != nil {
		return Info{}, err
	}
	dir, err := s.dir()
	if err != nil {
		return Info{}, err
	}
	return readInfo(filepath.Join(dir, name), name)
}

func readInfo(imageDir, name string) (Info, error) {
	b, err := os.ReadFile(filepath.Join(imageDir, infoFile))
	if errors.Is(err, os.ErrNotExist) {
		return Info{}, notBuilt(name)
	}
	if err != nil {
		return Info{}, err
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return Info{}, fmt.Errorf("image %s: corrupt %s: %w (rebuild it with \"sbxd image build --force %s\")", name, infoFile, err, name)
	}
	info.Name = name // the directory, not the file, names the image
	info.Rootfs = filepath.Join(imageDir, "rootfs")
	return info, nil
}

func writeInfo(imageDir string, info Info) error {
	info.Rootfs = ""
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(imageDir, infoFile), append(b, '\n'), 0o644)
}

// List returns the built images, sorted by name. A missing directory is an
// empty list.
func (s *Store) List() ([]Info, error) {
	dir, err := s.dir()
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, e := range ents {
		// Names never start with '.', so builds in progress, leftovers and
		// logs are skipped here.
		if !e.IsDir() || ValidateName(e.Name()) != nil {
			continue
		}
		info, err := readInfo(filepath.Join(dir, e.Name()), e.Name())
		if errors.Is(err, errdefs.ErrImageNotFound) {
			continue // not an image: something else someone put here
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
