package sandbox

import (
	"fmt"

	"github.com/sbx-dev/sbx/internal/errdefs"
)

// ValidateID checks a sandbox id: 1–63 characters of [a-z0-9-], not
// starting or ending with '-'. The rules make an id a valid hostname label
// and a safe path component.
func ValidateID(id string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: %q %s; ids are 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'",
			errdefs.ErrInvalidSandboxID, id, why)
	}
	switch {
	case id == "":
		return bad("is empty")
	case len(id) > 63:
		return bad(fmt.Sprintf("is %d characters long", len(id)))
	case id[0] == '-' || id[len(id)-1] == '-':
		return bad("starts or ends with '-'")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return bad(fmt.Sprintf("contains %q", c))
		}
	}
	return nil
}
