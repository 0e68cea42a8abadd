package logging

import (
	"log/slog"
	"net/http"
	"regexp"
	"strings"
)

var (
	// X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS
	cloudTraceRE = regexp.MustCompile(`^([0-9a-fA-F]{32})(?:/([0-9]+))?`)
	// traceparent: 00-TRACE_ID-SPAN_ID-FLAGS (W3C)
	traceparentRE = regexp.MustCompile(`^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$`)
)

// TraceAttrs returns the Cloud Logging trace fields for a request, taken from
// traceparent or X-Cloud-Trace-Context, or nothing when neither is present.
func TraceAttrs(projectID string, r *http.Request) []any {
	attrs := TraceAttrList(projectID, r)
	out := make([]any, len(attrs))
	for i, a := range attrs {
		out[i] = a
	}
	return out
}

// TraceAttrList is TraceAttrs as slog.Attr values, for Logger.LogAttrs.
func TraceAttrList(projectID string, r *http.Request) []slog.Attr {
	tp, ctc := r.Header.Get("traceparent"), r.Header.Get("X-Cloud-Trace-Context")
	if tp == "" && ctc == "" {
		return nil // the common case, without regexp work
	}
	traceID, spanID := "", ""
	if m := traceparentRE.FindStringSubmatch(strings.TrimSpace(tp)); m != nil {
		traceID, spanID = m[1], m[2]
	} else if m := cloudTraceRE.FindStringSubmatch(strings.TrimSpace(ctc)); m != nil {
		traceID, spanID = strings.ToLower(m[1]), m[2]
	}
	if traceID == "" || traceID == strings.Repeat("0", 32) {
		return nil
	}
	attrs := []slog.Attr{slog.String(FieldTrace, "projects/"+projectID+"/traces/"+traceID)}
	if spanID != "" {
		attrs = append(attrs, slog.String(FieldSpanID, spanID))
	}
	return attrs
}
