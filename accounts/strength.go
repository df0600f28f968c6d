package accounts

import (
	_ "embed"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// commonPasswordsText is a shipped list rather than an estimator such as
// zxcvbn: its answer is exact and explainable, its cost is one binary
// search (zxcvbn's matching grows fast with length and took seconds on a
// 1024-byte password), and it needs no dependency. See docs/asvs.md
// (6.2.4) for the choice and the list's source.
//
//go:embed commonpasswords.txt
var commonPasswordsText string

// commonPasswords is the sorted list, split once on first use.
var commonPasswords = sync.OnceValue(func() []string {
	var list []string
	for line := range strings.Lines(commonPasswordsText) {
		line = strings.TrimSuffix(line, "\n")
		if line != "" && !strings.HasPrefix(line, "#") {
			list = append(list, line)
		}
	}
	slices.Sort(list) // the file is sorted; sorting again costs little and keeps the search right if it is edited
	return list
})

// CommonPasswordCount is how many passwords the shipped list refuses.
func CommonPasswordCount() int { return len(commonPasswords()) }

func isCommon(lower string) bool {
	_, found := slices.BinarySearch(commonPasswords(), lower)
	return found
}

// keyboardRows are runs typed by sliding along a US keyboard; a password
// that is a stretch of one (either way) is refused.
var keyboardRows = []string{"qwertyuiopasdfghjklzxcvbnm", "`1234567890-=", "qwertyuiop[]\\", "asdfghjkl;'", "zxcvbnm,./"}

// CheckStrength refuses a password that is easy to guess (ASVS 6.2.4,
// 6.2.11), comparing without regard to case: one of the most common
// passwords, alone or with digits and symbols before or after it; one
// character or a pattern of up to 4 characters repeated ("        ",
// "abcabcabc"); a run of consecutive characters ("abcdefgh", "87654321")
// or a stretch of a keyboard row ("qwertyuiop"); the user name (name, if
// not empty) alone or with only digits and symbols added. Length and
// character rules are [ValidatePassword]'s. The error matches
// ErrInvalidInput and ErrWeakPassword and never contains the password.
func CheckStrength(password, name string) error {
	lower := norm.NFC.String(strings.ToLower(password))
	if name != "" {
		if err := personalWord(lower, FoldName(name), "user name"); err != nil {
			return err
		}
	}
	if isCommon(lower) {
		return weak("This password is too common: it is one of the passwords attackers try first. A few unrelated words make a stronger one.")
	}
	if stem := strings.TrimFunc(lower, notLetter); stem != lower && isCommon(stem) {
		return weak("This password is too common: it is a common password with digits or symbols added. A few unrelated words make a stronger one.")
	}
	runes := []rune(lower)
	if period := shortestPeriod(runes); period == 1 {
		return weak("This password is too easy to guess: it is one character repeated.")
	} else if period <= 4 {
		return weak("This password is too easy to guess: it repeats a pattern of %d characters.", period)
	}
	if consecutive(runes) {
		return weak("This password is too easy to guess: it is a run of consecutive characters.")
	}
	for _, row := range keyboardRows {
		if strings.Contains(row, lower) || strings.Contains(row, reverse(lower)) {
			return weak("This password is too easy to guess: it is a row of keys on the keyboard.")
		}
	}
	return nil
}

// personalWord refuses a password that is word (the user name, the email
// address), alone or with only digits, symbols and spaces added. lower is
// the password in lower case, word folded.
func personalWord(lower, word, what string) error {
	word = norm.NFC.String(strings.ToLower(word))
	if word == "" {
		return nil
	}
	if lower == word {
		return weak("This password is too easy to guess: it is your %s.", what)
	}
	if utf8.RuneCountInString(word) >= 3 && strings.Contains(lower, word) &&
		strings.IndexFunc(strings.ReplaceAll(lower, word, ""), unicode.IsLetter) < 0 {
		return weak("This password is too easy to guess: it is your %s with only digits or symbols added.", what)
	}
	return nil
}

func notLetter(r rune) bool { return !unicode.IsLetter(r) }

// shortestPeriod returns the length of the shortest unit that s is whole
// repetitions of (len(s) when there is none), looking at units of up to 4
// characters.
func shortestPeriod(s []rune) int {
	for p := 1; p <= 4 && 2*p <= len(s); p++ {
		if len(s)%p != 0 {
			continue
		}
		repeated := true
		for i := p; i < len(s) && repeated; i++ {
			repeated = s[i] == s[i-p]
		}
		if repeated {
			return p
		}
	}
	return len(s)
}

// consecutive reports whether every character follows the one before it
// by one code point, up or down ("abcdefgh", "98765432").
func consecutive(s []rune) bool {
	if len(s) < 2 {
		return false
	}
	step := s[1] - s[0]
	if step != 1 && step != -1 {
		return false
	}
	for i := 2; i < len(s); i++ {
		if s[i]-s[i-1] != step {
			return false
		}
	}
	return true
}

func reverse(s string) string {
	r := []rune(s)
	slices.Reverse(r)
	return string(r)
}
