// Package schemas holds the JSON Schemas of calsync's messages, embedded so
// that tests and tools load them by name wherever they run. Not part of the
// deployed build: no package the functions are built from may import it
// (the function zip holds Go files only; TestFunctionsDoNotImportSchemas).
package schemas

import (
	"bytes"
	"embed"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// FS holds the schema documents, by file name.
//
//go:embed *.json
var FS embed.FS

// The schemas, by file name.
const (
	Change    = "change.v1.json"
	Control   = "control.v1.json"
	Lifecycle = "lifecycle.v1.json"
)

// baseURL is where the documents' $id puts them.
const baseURL = "https://github.com/calsync/calsync/schemas/"

var (
	mu       sync.Mutex
	compiled = map[string]*jsonschema.Schema{}
)

// Compile returns the named schema compiled, with formats (date-time)
// asserted. Compiled once per name.
func Compile(name string) (*jsonschema.Schema, error) {
	mu.Lock()
	defer mu.Unlock()
	if s := compiled[name]; s != nil {
		return s, nil
	}
	f, err := FS.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		return nil, fmt.Errorf("schemas: %s: %w", name, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(baseURL+name, doc); err != nil {
		return nil, fmt.Errorf("schemas: %s: %w", name, err)
	}
	s, err := c.Compile(baseURL + name)
	if err != nil {
		return nil, fmt.Errorf("schemas: %s: %w", name, err)
	}
	compiled[name] = s
	return s, nil
}

// Validate checks one JSON document against the named schema.
func Validate(name string, data []byte) error {
	s, err := Compile(name)
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("schemas: not JSON: %w", err)
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("does not match %s: %w", name, err)
	}
	return nil
}
