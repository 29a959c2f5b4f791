package blob

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/sbx-dev/sbx/internal/errdefs"
)

// Limits on keys and metadata. They are the tightest of the stores sbx
// supports (S3 and Linux filesystems), so that a key or a metadata map
// that one store accepts, every store accepts.
const (
	// MaxKeyLen is the longest key, in bytes (S3's limit).
	MaxKeyLen = 1024
	// MaxSegmentLen is the longest '/'-separated segment of a key, in
	// bytes (NAME_MAX of Linux filesystems).
	MaxSegmentLen = 255
	// MaxMetadataSize bounds the metadata of one object: the sum over its
	// entries of len(key) + len(EscapeValue(value)), in bytes. S3 allows
	// 2 KB of user metadata but servers differ in what they count (header
	// prefixes, other x-amz headers), so sbx keeps to half.
	MaxMetadataSize = 1024
	// MaxMetadataKeyLen is the longest metadata key, in bytes.
	MaxMetadataKeyLen = 128
)

// invalidError is a validation failure: it matches its kind
// (ErrInvalidKey or ErrInvalidMetadata) and errdefs.ErrInvalidArgument, and
// its message says what is wrong without repeating either.
type invalidError struct {
	kind error
	msg  string
}

func (e *invalidError) Error() string   { return e.msg }
func (e *invalidError) Unwrap() []error { return []error{e.kind, errdefs.ErrInvalidArgument} }

func invalidKey(key, why string) error {
	return &invalidError{ErrInvalidKey, fmt.Sprintf("invalid blob key %q: %s", key, why)}
}

// ValidateKey reports whether key may name an object, with an error
// wrapping ErrInvalidKey that says what to fix. A key is a relative
// '/'-separated path: 1 to MaxKeyLen bytes of UTF-8 without control
// characters, no leading or trailing '/', and segments that are non-empty,
// not "." or "..", and at most MaxSegmentLen bytes.
func ValidateKey(key string) error {
	if key == "" {
		return invalidKey(key, "it is empty")
	}
	if strings.HasSuffix(key, "/") {
		return invalidKey(key, "it ends with '/'; keys name objects, not directories")
	}
	return validatePath(key, true)
}

// ValidatePrefix reports whether prefix may be passed to List, with an
// error wrapping ErrInvalidKey. A prefix follows the rules of ValidateKey,
// except that it may be empty or end with '/', and its last segment (the
// part after the last '/') is matched as a plain string prefix and so may
// be anything, "." and ".." included.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return validatePath(prefix, false)
}

// validatePath checks the rules shared by keys and prefixes. For a prefix
// (whole false) the text after the last '/' is not a complete segment.
func validatePath(p string, whole bool) error {
	if len(p) > MaxKeyLen {
		return invalidKey(p[:32]+"...", fmt.Sprintf("it is %d bytes long, the limit is %d", len(p), MaxKeyLen))
	}
	if !utf8.ValidString(p) {
		return invalidKey(p, "it is not valid UTF-8")
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f {
			return invalidKey(p, fmt.Sprintf("it contains the control character %#02x at byte %d", c, i))
		}
	}
	if strings.HasPrefix(p, "/") {
		return invalidKey(p, "it starts with '/'; keys are relative paths")
	}
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		last := i == len(segs)-1
		if last && !whole {
			// A partial segment: "ab" matches "abc"; "" after a
			// trailing '/' matches everything below.
			if len(seg) > MaxSegmentLen {
				return invalidKey(p, fmt.Sprintf("segment %q is %d bytes long, the limit is %d", seg[:32]+"...", len(seg), MaxSegmentLen))
			}
			continue
		}
		switch {
		case seg == "":
			return invalidKey(p, "it has an empty segment (\"//\")")
		case seg == "." || seg == "..":
			return invalidKey(p, fmt.Sprintf("it has a %q segment; keys cannot refer to directories", seg))
		case len(seg) > MaxSegmentLen:
			return invalidKey(p, fmt.Sprintf("segment %q is %d bytes long, the limit is %d", seg[:32]+"...", len(seg), MaxSegmentLen))
		}
	}
	return nil
}

// ValidateMetadata reports whether m may be stored with an object, with an
// error wrapping ErrInvalidMetadata that says what to fix. Keys are 1 to
// MaxMetadataKeyLen bytes of lower-case ASCII letters, digits and '-',
// starting with a letter or digit (S3 carries them in case-insensitive
// HTTP header names). Values are any UTF-8 text. All entries together are
// at most MaxMetadataSize bytes, counted as that constant says. A nil or
// empty map is valid.
func ValidateMetadata(m map[string]string) error {
	size := 0
	for k, v := range m {
		if err := validateMetadataKey(k); err != nil {
			return err
		}
		if !utf8.ValidString(v) {
			return &invalidError{ErrInvalidMetadata, fmt.Sprintf("invalid blob metadata: the value of %q is not valid UTF-8", k)}
		}
		size += len(k) + escapedLen(v)
	}
	if size > MaxMetadataSize {
		return &invalidError{ErrInvalidMetadata, fmt.Sprintf("invalid blob metadata: it is %d bytes (keys plus escaped values), the limit is %d", size, MaxMetadataSize)}
	}
	return nil
}

func validateMetadataKey(k string) error {
	bad := func(why string) error {
		return &invalidError{ErrInvalidMetadata, fmt.Sprintf("invalid blob metadata key %q: %s", k, why)}
	}
	if k == "" {
		return bad("it is empty")
	}
	if len(k) > MaxMetadataKeyLen {
		return bad(fmt.Sprintf("it is %d bytes long, the limit is %d", len(k), MaxMetadataKeyLen))
	}
	if k[0] == '-' {
		return bad("it starts with '-'")
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return bad(fmt.Sprintf("byte %d (%q) is not one of a-z, 0-9 and '-'", i, c))
		}
	}
	return nil
}

// plain reports whether c stands for itself in EscapeValue's output.
func plain(c byte) bool { return c > 0x20 && c < 0x7f && c != '%' }

func escapedLen(v string) int {
	n := len(v)
	for i := 0; i < len(v); i++ {
		if !plain(v[i]) {
			n += 2
		}
	}
	return n
}

// EscapeValue encodes a metadata value as printable ASCII without spaces,
// which survives HTTP headers (no trimming, no charset rules) and
// newline-separated records: every byte outside '!'..'~', and '%', becomes
// %XX. Values that are already plain come out unchanged. Stores use it;
// callers of Store never see escaped values.
func EscapeValue(v string) string {
	if escapedLen(v) == len(v) {
		return v
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(escapedLen(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// UnescapeValue reverses EscapeValue.
func UnescapeValue(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("escaped metadata value %q: truncated %%-escape at byte %d", s, i)
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("escaped metadata value %q: bad %%-escape at byte %d", s, i)
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
