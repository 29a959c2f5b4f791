package image

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sbx-dev/sbx/internal/errdefs"
)

func TestRecipeHash(t *testing.T) {
	base := Recipe{Name: "a", Suite: "bookworm", Packages: []string{"git", "curl", "bash"}}
	same := []Recipe{
		{Name: "other-name", Description: "names and descriptions do not count", Suite: "bookworm", Packages: []string{"git", "curl", "bash"}},
		{Name: "a", Suite: "bookworm", Packages: []string{"bash", "git", "curl"}},
		{Name: "a", Suite: "bookworm", Packages: []string{"bash", "git", "curl", "git"}},
	}
	different := []Recipe{
		{Name: "a", Suite: "trixie", Packages: []string{"git", "curl", "bash"}},
		{Name: "a", Suite: "bookworm", Packages: []string{"git", "curl"}},
		{Name: "a", Suite: "bookworm", Packages: []string{"git", "curl", "bash", "python3"}},
		{Name: "a", Suite: "bookworm", Packages: []string{"git,curl", "bash"}},
	}
	h := base.Hash()
	if !strings.HasPrefix(h, "sha256:") || len(h) != len("sha256:")+64 {
		t.Fatalf("Hash() = %q, want sha256:<64 hex>", h)
	}
	for _, r := range same {
		if r.Hash() != h {
			t.Errorf("%+v: hash differs from %+v", r, base)
		}
	}
	for _, r := range different {
		if r.Hash() == h {
			t.Errorf("%+v: same hash as %+v", r, base)
		}
	}
	if pk := base.Packages; !slices.Equal(pk, []string{"git", "curl", "bash"}) {
		t.Errorf("Hash reordered the recipe's packages: %v", pk)
	}
}

func TestRecipes(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Recipes() {
		if err := ValidateName(r.Name); err != nil {
			t.Errorf("recipe name: %v", err)
		}
		if seen[r.Name] {
			t.Errorf("recipe %s listed twice", r.Name)
		}
		seen[r.Name] = true
		for _, want := range []string{"bash", "python3", "nodejs", "npm", "git", "curl", "ca-certificates"} {
			if !slices.Contains(r.Packages, want) {
				t.Errorf("recipe %s lacks %s", r.Name, want)
			}
		}
	}
	py, err := LookupRecipe("python")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ipython3", "python3-numpy", "python3-pandas", "python3-matplotlib", "node-typescript"} {
		if !slices.Contains(py.Packages, want) {
			t.Errorf("python recipe lacks %s", want)
		}
	}
}

func TestLookupRecipeUnknown(t *testing.T) {
	_, err := LookupRecipe("ruby")
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("err = %v, want ErrInvalidArgument", err)
	}
	if !strings.Contains(err.Error(), `"ruby"`) || !strings.Contains(err.Error(), "default, python") {
		t.Errorf("err = %q, want it to name the recipe and list the known ones", err)
	}
}
