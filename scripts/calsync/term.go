package main

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// terminalSafe is s as the CLI prints it in a table: printable characters
// kept (letters of any script included), everything a terminal could act on
// escaped the way Go quotes strings: control characters (an ESC starts
// colour, cursor and title sequences), format characters such as the bidi
// override U+202E (which reorders what follows on screen), tabs (which would
// shift the table's columns), invalid UTF-8, and the backslash itself, so an
// escape in the output is always ours. Calendar ids and statuses come from
// Firestore, which anyone with write access to it can fill.
func terminalSafe(s string) string {
	clean := true
	for _, r := range s {
		if r == '\\' || r == utf8.RuneError || !strconv.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(s[i])|0x100, 16)[1:])
		case r == '\\':
			b.WriteString(`\\`)
		case strconv.IsPrint(r) && r != utf8.RuneError:
			b.WriteRune(r)
		default:
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}
