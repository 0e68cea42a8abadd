package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/calsync/calsync/schemas"
)

// The published control schema and ParseControl agree: every message the
// parser accepts validates, and every message it refuses is refused by the
// schema too, unless a schema cannot tell (SchemaBlind; kept honest: a
// blind row the schema does refuse fails here).
func TestControlSchemaAgreesWithParser(t *testing.T) {
	for _, data := range ControlAccepted {
		if err := schemas.Validate(schemas.Control, []byte(data)); err != nil {
			t.Errorf("accepted by ParseControl, refused by the schema: %v", err)
		}
	}
	for _, tc := range ControlRefused {
		err := schemas.Validate(schemas.Control, []byte(tc.Data))
		switch {
		case tc.Reason == ReasonNotJSON && tc.SchemaBlind:
			if err == nil {
				t.Errorf("%s: the schema validated what is not one JSON value", tc.Name)
			}
		case tc.SchemaBlind && err != nil:
			t.Errorf("%s: marked SchemaBlind, but the schema refuses it: %v", tc.Name, err)
		case !tc.SchemaBlind && err == nil:
			t.Errorf("%s: refused by ParseControl (%s), accepted by the schema", tc.Name, tc.Reason)
		}
	}
}

// The control examples of the READMEs (every JSON object with an "action" in
// a ```json block) are accepted by ParseControl and validate.
func TestReadmeControlExamples(t *testing.T) {
	for _, file := range []string{"README.md", "../../README.md"} {
		examples := jsonExamples(t, file, `"action"`)
		if len(examples) < 4 {
			t.Errorf("%s: %d control examples, want the 4 actions' (is the json block still there?)", file, len(examples))
		}
		for _, data := range examples {
			if _, err := ParseControl(data); err != nil {
				t.Errorf("%s: example %s: %v", file, data, err)
			}
			if err := schemas.Validate(schemas.Control, data); err != nil {
				t.Errorf("%s: example %s: %v", file, data, err)
			}
		}
	}
}

// The change and lifecycle examples of the root README (every JSON object
// with a "schemaVersion" in a ```json block) validate against their schemas:
// a lifecycle message is the one with a "type".
func TestReadmeMessageExamples(t *testing.T) {
	counts := map[string]int{}
	for _, data := range jsonExamples(t, "../../README.md", `"schemaVersion"`) {
		var probe struct{ Type *string }
		if err := json.Unmarshal(data, &probe); err != nil {
			t.Fatal(err)
		}
		schema := schemas.Change
		if probe.Type != nil {
			schema = schemas.Lifecycle
		}
		counts[schema]++
		if err := schemas.Validate(schema, data); err != nil {
			t.Errorf("README example %s: %v", data, err)
		}
	}
	if counts[schemas.Change] < 1 || counts[schemas.Lifecycle] < 1 {
		t.Errorf("README examples by schema: %v, want a change and a lifecycle message at least (are the json blocks still there?)", counts)
	}
}

// jsonExamples returns the JSON objects holding marker (a key, quoted) in
// file's ```json blocks (indented ones too).
func jsonExamples(t *testing.T, file, marker string) [][]byte {
	t.Helper()
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	var block []string
	in := false
	for _, line := range strings.Split(string(text), "\n") {
		switch trimmed := strings.TrimSpace(line); {
		case !in && trimmed == "```json":
			in, block = true, nil
		case in && trimmed == "```":
			in = false
			dec := json.NewDecoder(strings.NewReader(strings.Join(block, "\n")))
			for {
				var raw json.RawMessage
				if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					t.Fatalf("%s: a json block does not decode: %v", file, err)
				}
				if bytes.Contains(raw, []byte(marker)) {
					out = append(out, raw)
				}
			}
		case in:
			block = append(block, line)
		}
	}
	return out
}

// FuzzControlSchema: a message the schema accepts, ParseControl accepts too,
// but for what a schema cannot see (a key twice, over 64 KiB, a pattern
// path.Match refuses or over 256 bytes of non-ASCII characters, issuedAt
// zero).
func FuzzControlSchema(f *testing.F) {
	for _, data := range ControlAccepted {
		f.Add(data)
	}
	for _, tc := range ControlRefused {
		f.Add(tc.Data)
	}
	blind := func(err error) bool {
		switch InvalidReason(err) {
		case ReasonDuplicateKey, ReasonTooLarge, ReasonBadFilter:
			return true
		case ReasonBadIssuedAt: // the zero time only: its form is in the schema
			return strings.Contains(err.Error(), "required")
		}
		return false
	}
	f.Fuzz(func(t *testing.T, data string) {
		if schemas.Validate(schemas.Control, []byte(data)) != nil {
			return
		}
		if _, err := ParseControl([]byte(data)); err != nil && !blind(err) {
			t.Fatalf("the schema accepts %q, ParseControl refuses it: %v", data, err)
		}
	})
}
