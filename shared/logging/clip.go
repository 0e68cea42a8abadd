package logging

import "unicode/utf8"

// MaxValueBytes bounds a client-controlled value quoted in a log line.
const MaxValueBytes = 128

// Clip shortens a client-controlled value to at most MaxValueBytes bytes,
// ending in "…" when it was cut, and never splits a UTF-8 character: a
// hostile sender cannot make one log line large.
func Clip(s string) string {
	if len(s) <= MaxValueBytes {
		return s
	}
	const mark = "…"
	cut := MaxValueBytes - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
