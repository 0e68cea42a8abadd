package logging

import (
	"strconv"
	"unicode/utf8"
)

// MaxValueBytes bounds a client-controlled value quoted in a log line.
const MaxValueBytes = 128

// clipMark ends a value that was cut.
const clipMark = "…"

// Clip shortens a client-controlled value to at most MaxValueBytes bytes,
// ending in "…" when it was cut, and never splits a UTF-8 character: a
// hostile sender cannot make one log line large.
func Clip(s string) string {
	if len(s) <= MaxValueBytes {
		return s
	}
	cut := MaxValueBytes - len(clipMark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + clipMark
}

// Untrusted is what a log line may quote of a value a client wrote (a
// header, a query parameter): printable ASCII kept, everything else escaped
// the way Go quotes strings (\x1b, \u202e, \xff, \\), and the result clipped to
// MaxValueBytes bytes without cutting an escape in two. JSON encoding alone
// would keep terminal escapes' printable tails and bidi overrides verbatim;
// this way a log line shows exactly the bytes that came, and no more than
// 128 of them.
func Untrusted(s string) string {
	if len(s) <= MaxValueBytes && printableASCII(s) {
		return s // the usual case: no allocation
	}
	limit := MaxValueBytes - len(clipMark)
	out := make([]byte, 0, MaxValueBytes+16)
	fit := 0 // length of out at the last piece boundary within limit
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case s[i] == '\\':
			out = append(out, '\\', '\\') // so an escape in the output is always ours
		case s[i] >= 0x20 && s[i] < 0x7f:
			out = append(out, s[i])
		case r == utf8.RuneError && size == 1:
			out = append(out, '\\', 'x', hex[s[i]>>4], hex[s[i]&0xf])
		default:
			q := strconv.AppendQuoteRuneToASCII(out, r)
			out = append(q[:len(out)], q[len(out)+1:len(q)-1]...) // without the quotes
		}
		i += size
		if len(out) > MaxValueBytes {
			return string(append(out[:fit], clipMark...))
		}
		if len(out) <= limit {
			fit = len(out)
		}
	}
	return string(out)
}

const hex = "0123456789abcdef"

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f || s[i] == '\\' {
			return false
		}
	}
	return true
}
