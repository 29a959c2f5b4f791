package image

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/sbx-dev/sbx/internal/errdefs"
)

// builderRevision is part of every recipe hash. Bump it when a change to the
// build steps (not to a recipe) changes what ends up in an image, so that
// images built by older code are rebuilt rather than reported up to date.
const builderRevision = 1

// Recipe says what goes into an image. Recipes are data: every image is
// built by the same steps (debootstrap a minbase, then apt-get install the
// packages), only the table below differs.
type Recipe struct {
	Name        string
	Description string
	// Suite is the Debian release.
	Suite string
	// Packages are installed with apt-get, without recommends, after the
	// minbase bootstrap.
	Packages []string
}

// basePackages are in every image: a shell and userland the agent and its
// users rely on, Python and Node for code execution, git and curl.
var basePackages = []string{
	"bash", "coreutils", "procps", "python3", "nodejs", "npm", "git", "curl",
	"ca-certificates", "iproute2",
}

// recipes is the table of known images.
var recipes = []Recipe{
	{
		Name:        "default",
		Description: "Debian bookworm with bash, Python 3, Node.js + npm, git, curl",
		Suite:       "bookworm",
		Packages:    basePackages,
	},
	{
		Name:        "python",
		Description: "default plus IPython, NumPy, pandas, Matplotlib, ipykernel and TypeScript, for code interpreters",
		Suite:       "bookworm",
		Packages: slices.Concat(basePackages, []string{
			"ipython3", "python3-ipykernel",
			"python3-numpy", "python3-pandas", "python3-matplotlib",
			// Matplotlib needs fonttools, which needs "python3-scipy |
			// python3-munkres"; naming munkres keeps apt from choosing
			// SciPy, whose build-time dependency on pythran drags in gcc,
			// g++ and Boost: over 1 GiB of the image otherwise.
			"python3-munkres",
			"node-typescript",
		}),
	},
}

// Recipes returns a copy of the known recipes, in table order.
func Recipes() []Recipe {
	out := slices.Clone(recipes)
	for i := range out {
		out[i].Packages = slices.Clone(out[i].Packages)
	}
	return out
}

// LookupRecipe returns the recipe called name. An unknown name is an
// ErrInvalidArgument that lists the known ones.
func LookupRecipe(name string) (Recipe, error) {
	var names []string
	for _, r := range recipes {
		if r.Name == name {
			r.Packages = slices.Clone(r.Packages)
			return r, nil
		}
		names = append(names, r.Name)
	}
	return Recipe{}, fmt.Errorf("%w: unknown image recipe %q: known recipes are %s", errdefs.ErrInvalidArgument, name, strings.Join(names, ", "))
}

// Hash identifies what the recipe builds: the suite, the set of packages
// (order and duplicates do not matter) and the builder revision. The name,
// description and mirrors do not count: the same recipe built from two
// mirrors of one archive is the same image.
func (r Recipe) Hash() string {
	pkgs := slices.Clone(r.Packages)
	slices.Sort(pkgs)
	pkgs = slices.Compact(pkgs)
	h := sha256.New()
	fmt.Fprintf(h, "sbx-image\nrevision=%d\nsuite=%s\npackages=%s\n", builderRevision, r.Suite, strings.Join(pkgs, ","))
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
