package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// palette colours variants: calsync first, baselines after.
var palette = []string{"#1a73e8", "#e8710a", "#9334e6", "#12b5cb", "#e52592", "#7cb342"}

// Chart draws a variant table as horizontal bars, one panel per measure, each
// panel scaled to its own maximum (measures have different units).
func Chart(title string, t Table) string {
	const (
		width    = 760
		labelW   = 150
		barH     = 18
		gap      = 6
		panelPad = 34
		valueW   = 90
	)
	var b strings.Builder
	height := 40
	for range t.Measures {
		height += panelPad + len(t.Variants)*(barH+gap)
	}
	height += 10
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	y := 40
	for _, meas := range t.Measures {
		max := 0.0
		for _, v := range t.Variants {
			if x, ok := t.Cells[meas][v]; ok && x > max {
				max = x
			}
		}
		if max == 0 {
			max = 1
		}
		fmt.Fprintf(&b, `<text x="10" y="%d" font-weight="bold">%s</text>`+"\n", y+20, html.EscapeString(meas))
		y += panelPad - 4
		for i, v := range t.Variants {
			x, ok := t.Cells[meas][v]
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelW-6, y+barH-5, html.EscapeString(v))
			if ok && x < 0 {
				// The benchmarks use negative figures as "never" (e.g. lag -1: not exact in time).
				fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#888">%s (none: never reached)</text>`+"\n", labelW+6, y+barH-5, fmtNum(x))
			} else if ok {
				w := int(math.Round(x / max * float64(width-labelW-valueW-10)))
				fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"><title>%s %s: %s</title></rect>`+"\n",
					labelW, y, w, barH, palette[i%len(palette)], html.EscapeString(v), html.EscapeString(meas), fmtNum(x))
				fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", labelW+w+6, y+barH-5, fmtNum(x))
			} else {
				fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#888">n/a</text>`+"\n", labelW+6, y+barH-5)
			}
			y += barH + gap
		}
		y += 4
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// fmtNum prints a figure with sensible precision.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case v == math.Trunc(v) && a < 1e15:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}
