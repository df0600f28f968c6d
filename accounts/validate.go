package accounts

import (
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"

	"github.com/cloakroom/cloakroom/internal/ascii"
)

// Limits on user input.
const (
	MaxNameLength      = 64   // bytes of UTF-8, for a name and for its fold; roles are ASCII
	MaxRoles           = 32   // roles per user
	MinPasswordLength  = 8    // characters (code points), ASVS 5.0 6.2.1
	MaxPasswordBytes   = 1024 // bytes; ASVS 6.2.9 asks for at least 64 characters
	MaxEmailLength     = 254  // bytes, the longest address SMTP can carry
	nameCharsetSummary = "letters, digits, '.', '_', '@' and '-'"
	roleCharsetSummary = "ASCII letters, digits, '.', '_', '@' and '-'"
)

// InputError is a validation failure. Its message is written for the
// person who typed the input (no package prefix) and never repeats a
// password; errors.Is(err, ErrInvalidInput) holds for every InputError,
// and errors.Is(err, ErrWeakPassword) for a refused new password.
type InputError struct {
	Message string
	weak    bool
}

func (e *InputError) Error() string { return e.Message }

// Is makes errors.Is match ErrInvalidInput, and ErrWeakPassword for a
// password the policy refuses.
func (e *InputError) Is(target error) bool {
	return target == ErrInvalidInput || e.weak && target == ErrWeakPassword
}

func invalid(format string, args ...any) error {
	return &InputError{Message: fmt.Sprintf(format, args...)}
}

func weak(format string, args ...any) error {
	return &InputError{Message: fmt.Sprintf(format, args...), weak: true}
}

// ValidateName checks a user name; see [CanonicalName] for the rules.
func ValidateName(name string) error {
	_, err := CanonicalName(name)
	return err
}

// CanonicalName checks a user name and returns the form accounts are
// created with: the name as typed, width-mapped and NFC-normalised by the
// PRECIS UsernameCasePreserved profile (RFC 8265), so that a name typed
// with a decomposed "ë" or full-width letters is stored once, as
// composed, half-width characters. An ASCII name is returned unchanged.
//
// A name is 1 to 64 bytes of Unicode letters (with their combining
// marks), ASCII digits, '.', '_', '@' and '-', does not start or end with
// '.' nor start with '-' (it would read as a command-line flag), and its
// letters come from one script (Japanese may mix Han, Hiragana and
// Katakana; Korean Han and Hangul; Chinese Han and Bopomofo), so that
// "pаypal" with a Cyrillic "а" cannot pass for "paypal". Names are
// compared by [FoldName].
func CanonicalName(name string) (string, error) {
	const what = "user name"
	switch {
	case name == "":
		return "", invalid("%s is empty", what)
	case len(name) > 4*MaxNameLength:
		// Bounds the work below; the exact limit is checked after mapping.
		return "", invalid("%s is %d bytes long, at most %d allowed", what, len(name), MaxNameLength)
	case !utf8.ValidString(name):
		return "", invalid("%s is not valid UTF-8", what)
	}
	canon, err := precis.UsernameCasePreserved.String(name)
	if err != nil {
		// Explain which character is wrong; PRECIS's own errors do not.
		if err := nameCharacters(what, width(name)); err != nil {
			return "", err
		}
		return "", invalid("%s is not a valid user name (RFC 8265): %s", what, strings.TrimPrefix(err.Error(), "precis: "))
	}
	if err := nameCharacters(what, canon); err != nil {
		return "", err
	}
	switch {
	case len(canon) > MaxNameLength:
		return "", invalid("%s is %d bytes long, at most %d allowed", what, len(canon), MaxNameLength)
	case canon[0] == '.' || canon[len(canon)-1] == '.':
		return "", invalid("%s must not start or end with '.'", what)
	case canon[0] == '-':
		return "", invalid("%s must not start with '-'", what)
	}
	if scripts := scriptsOf(canon); !oneScript(scripts) {
		return "", invalid("%s: '%s' mixes %s letters", what, canon, joinAnd(scripts))
	}
	folded, err := precis.UsernameCaseMapped.String(canon)
	if err != nil || len(folded) > MaxNameLength {
		// Lower case can be longer ("İ" is 2 bytes, "i̇" 3); the fold is
		// the key stores index, so it is bounded too.
		return "", invalid("%s is %d bytes long in lower case, at most %d allowed", what, len(folded), MaxNameLength)
	}
	return canon, nil
}

// width maps full-width characters to their usual form, as PRECIS does,
// so that an error names the character the user meant.
func width(s string) string {
	if mapped, err := precis.UsernameCasePreserved.String(s); err == nil {
		return mapped
	}
	return s
}

// nameCharacters refuses the first character a name may not have.
func nameCharacters(what, s string) error {
	pos := 0
	for i, r := range s {
		pos++
		switch {
		case unicode.IsLetter(r), '0' <= r && r <= '9', r == '.', r == '_', r == '@', r == '-':
		case unicode.Is(unicode.M, r) && i > 0: // a combining mark on the letter before it
		default:
			return invalid("%s has %s at character %d; allowed are %s", what, describeRune(r), pos, nameCharsetSummary)
		}
	}
	return nil
}

// describeRune names a character for an error message: quoted when it
// prints as itself, always with its code point.
func describeRune(r rune) string {
	if r < utf8.RuneSelf {
		return fmt.Sprintf("the character %q", r)
	}
	if unicode.IsGraphic(r) && !unicode.IsSpace(r) && !unicode.Is(unicode.M, r) {
		return fmt.Sprintf("the character %q (U+%04X)", r, r)
	}
	return fmt.Sprintf("the character U+%04X", r)
}

// scriptsOf lists the scripts of the letters of s, in order of first use.
func scriptsOf(s string) []string {
	var scripts []string
	for _, r := range s {
		if !unicode.IsLetter(r) {
			continue
		}
		name := scriptOf(r)
		if name != "" && !contains(scripts, name) {
			scripts = append(scripts, name)
		}
	}
	return scripts
}

// scriptNames are checked in this order: the common scripts first, then
// every other one unicode knows.
var scriptNames = func() []string {
	names := []string{"Latin", "Cyrillic", "Greek", "Han", "Hiragana", "Katakana", "Hangul", "Arabic", "Hebrew", "Devanagari"}
	for name := range unicode.Scripts {
		if name != "Common" && name != "Inherited" && !contains(names, name) {
			names = append(names, name)
		}
	}
	return names
}()

func scriptOf(r rune) string {
	for _, name := range scriptNames {
		if unicode.Is(unicode.Scripts[name], r) {
			return name
		}
	}
	return "" // Common or Inherited: letters every script uses
}

// oneScript reports whether scripts are one writing system: a single
// script, or Han with the scripts written alongside it.
func oneScript(scripts []string) bool {
	if len(scripts) <= 1 {
		return true
	}
	for _, system := range [][]string{{"Han", "Hiragana", "Katakana"}, {"Han", "Hangul"}, {"Han", "Bopomofo"}} {
		if allIn(scripts, system) {
			return true
		}
	}
	return false
}

func allIn(items, set []string) bool {
	for _, it := range items {
		if !contains(set, it) {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, it := range list {
		if it == s {
			return true
		}
	}
	return false
}

// joinAnd joins names as "A and B" or "A, B and C".
func joinAnd(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// FoldName maps a name to the key under which names are unique and looked
// up (see [Store]): the PRECIS UsernameCaseMapped form (RFC 8265: width
// mapped, lower case, NFC), so "ZOË", "zoë" and a decomposed "zoë" are
// one user. For an ASCII name it is the name in ASCII lower case, the key
// every store used before Unicode names, so existing accounts keep their
// identity. A string [ValidateName] refuses folds to its ASCII lower case;
// such strings never reach a store through the [Service]. Stores and
// every other place that compares or keys names (throttling, device
// tokens) use it, so all fold alike.
func FoldName(name string) string {
	if isASCII(name) {
		return ascii.Lower(name)
	}
	if folded, err := precis.UsernameCaseMapped.String(name); err == nil {
		return folded
	}
	return ascii.Lower(name)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// ValidateRoles checks a role list: at most 32 roles, each 1 to 64
// characters of [a-zA-Z0-9._@-], not starting or ending with '.' nor
// starting with '-', no role twice. Roles stay ASCII: they are matched
// exactly by upstream apps.
func ValidateRoles(roles []string) error {
	if len(roles) > MaxRoles {
		return invalid("at most %d roles, got %d", MaxRoles, len(roles))
	}
	for i, role := range roles {
		if err := validateRole(role); err != nil {
			return err
		}
		for _, earlier := range roles[:i] {
			if earlier == role {
				return invalid("role %q listed twice", role)
			}
		}
	}
	return nil
}

func validateRole(s string) error {
	const what = "role"
	if s == "" {
		return invalid("%s is empty", what)
	}
	if len(s) > MaxNameLength {
		return invalid("%s is %d bytes long, at most %d allowed", what, len(s), MaxNameLength)
	}
	for i := 0; i < len(s); i++ {
		if !roleByte(s[i]) {
			// Show one byte only: the rest of s may be anything.
			char := fmt.Sprintf("the non-ASCII byte 0x%02x", s[i])
			if s[i] < utf8.RuneSelf {
				char = fmt.Sprintf("the character %q", rune(s[i]))
			}
			return invalid("%s has %s at byte %d; allowed are %s", what, char, i, roleCharsetSummary)
		}
	}
	switch {
	case s[0] == '.' || s[len(s)-1] == '.':
		return invalid("%s must not start or end with '.'", what)
	case s[0] == '-':
		return invalid("%s must not start with '-'", what)
	}
	return nil
}

func roleByte(c byte) bool {
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
		return invalid("email is %d bytes long, at most %d allowed", len(email), MaxEmailLength)
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || addr.Address != email {
		return invalid("email is not a plain address like user@example.com")
	}
	return nil
}

// ValidatePassword checks a new password against ASVS 5.0 V6.2: at least 8
// characters, at most 1024 bytes, any printable Unicode including spaces,
// no composition rules (6.2.5); not one of the most common passwords
// (6.2.4), not one character or a short pattern repeated, not a run of
// the alphabet, the digits or a keyboard row, and not the user name
// alone or with digits and symbols around it (6.2.11); see
// [CheckStrength]. Control characters and invalid UTF-8 are refused
// because no keyboard types them and they hint at a client bug. The
// password is never modified, neither trimmed nor normalized (6.2.8), and
// error messages never contain it. Every failure matches ErrInvalidInput
// and ErrWeakPassword.
func ValidatePassword(name, password string) error {
	if len(password) > MaxPasswordBytes {
		return weak("password is %d bytes long, at most %d allowed", len(password), MaxPasswordBytes)
	}
	if !utf8.ValidString(password) {
		return weak("password is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(password); n < MinPasswordLength {
		return weak("password has %d characters, at least %d needed", n, MinPasswordLength)
	}
	if strings.IndexFunc(password, unicode.IsControl) >= 0 {
		return weak("password contains a control character")
	}
	return CheckStrength(password, name)
}
