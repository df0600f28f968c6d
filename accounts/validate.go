package accounts

import (
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/cloakroom/cloakroom/internal/ascii"
)

// Limits on user input.
const (
	MaxNameLength      = 64   // bytes; names and roles are ASCII
	MaxRoles           = 32   // roles per user
	MinPasswordLength  = 8    // characters (code points), ASVS 5.0 6.2.1
	MaxPasswordBytes   = 1024 // bytes; ASVS 6.2.9 asks for at least 64 characters
	MaxEmailLength     = 254  // bytes, the longest address SMTP can carry
	nameCharsetSummary = "letters, digits, '.', '_', '@' and '-'"
)

// ValidateName checks a user name: 1 to 64 characters from
// [a-zA-Z0-9._@-], not starting or ending with '.', not starting with '-'
// (it would read as a command-line flag). Names are compared without regard
// to ASCII case, so "Alice" and "alice" are the same user.
func ValidateName(name string) error {
	return validateIdentifier("user name", name)
}

// ValidateRoles checks a role list: at most 32 roles, each following the
// same rules as a user name, no role twice.
func ValidateRoles(roles []string) error {
	if len(roles) > MaxRoles {
		return fmt.Errorf("%w: at most %d roles, got %d", ErrInvalidInput, MaxRoles, len(roles))
	}
	for i, role := range roles {
		if err := validateIdentifier("role", role); err != nil {
			return err
		}
		for _, earlier := range roles[:i] {
			if earlier == role {
				return fmt.Errorf("%w: role %q listed twice", ErrInvalidInput, role)
			}
		}
	}
	return nil
}

func validateIdentifier(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalidInput, what)
	}
	if len(s) > MaxNameLength {
		return fmt.Errorf("%w: %s is %d bytes long, at most %d allowed", ErrInvalidInput, what, len(s), MaxNameLength)
	}
	for i := 0; i < len(s); i++ {
		if !identifierByte(s[i]) {
			// Show one byte only: the rest of s may be anything.
			char := fmt.Sprintf("the non-ASCII byte 0x%02x", s[i])
			if s[i] < utf8.RuneSelf {
				char = fmt.Sprintf("the character %q", rune(s[i]))
			}
			return fmt.Errorf("%w: %s has %s at byte %d; allowed are %s",
				ErrInvalidInput, what, char, i, nameCharsetSummary)
		}
	}
	switch {
	case s[0] == '.' || s[len(s)-1] == '.':
		return fmt.Errorf("%w: %s must not start or end with '.'", ErrInvalidInput, what)
	case s[0] == '-':
		return fmt.Errorf("%w: %s must not start with '-'", ErrInvalidInput, what)
	}
	return nil
}

func identifierByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '@' || c == '-'
}

// ValidateEmail checks an optional email address: empty, or a bare address
// (no display name, no angle brackets) of at most 254 bytes.
func ValidateEmail(email string) error {
	if email == "" {
		return nil
	}
	if len(email) > MaxEmailLength {
		return fmt.Errorf("%w: email is %d bytes long, at most %d allowed", ErrInvalidInput, len(email), MaxEmailLength)
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || addr.Address != email {
		return fmt.Errorf("%w: email is not a plain address like user@example.com", ErrInvalidInput)
	}
	return nil
}

// ValidatePassword checks a new password against ASVS 5.0 V6.2: at least 8
// characters, at most 1024 bytes, any printable Unicode including spaces,
// no composition rules (6.2.5), and not the user name (a context-specific
// word, 6.2.11). Control characters and invalid UTF-8 are refused because
// no keyboard types them and they hint at a client bug. The password is
// never modified, neither trimmed nor normalized (6.2.8), and error
// messages never contain it.
func ValidatePassword(name, password string) error {
	if len(password) > MaxPasswordBytes {
		return fmt.Errorf("%w: password is %d bytes long, at most %d allowed", ErrInvalidInput, len(password), MaxPasswordBytes)
	}
	if !utf8.ValidString(password) {
		return fmt.Errorf("%w: password is not valid UTF-8", ErrInvalidInput)
	}
	if n := utf8.RuneCountInString(password); n < MinPasswordLength {
		return fmt.Errorf("%w: password has %d characters, at least %d needed", ErrInvalidInput, n, MinPasswordLength)
	}
	if strings.IndexFunc(password, unicode.IsControl) >= 0 {
		return fmt.Errorf("%w: password contains a control character", ErrInvalidInput)
	}
	if name != "" && strings.EqualFold(password, name) {
		return fmt.Errorf("%w: password must not be the user name", ErrInvalidInput)
	}
	return nil
}

// FoldName maps a name to the key under which names are unique and looked
// up (see [Store]). Only ASCII letters fold, matching SQLite's NOCASE
// collation; valid names are ASCII anyway. Stores that key users by name
// use it so every backend folds alike.
func FoldName(name string) string { return ascii.Lower(name) }
