package schema

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"sort"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed *.schema.json
var files embed.FS

// Base is the $id prefix of every schema file.
const Base = "https://github.com/reversald/reversald/schema/"

// The schema files.
const (
	Event      = "event.schema.json"
	Outcome    = "outcome.schema.json" // any schema_version
	DeadLetter = "dead-letter.schema.json"
)

// OutcomeVersion is the file of the outcome of one schema_version.
func OutcomeVersion(v int) string { return fmt.Sprintf("outcome.v%d.schema.json", v) }

// Files lists the schema files, sorted.
func Files() []string {
	names, _ := fs.Glob(files, "*.schema.json") // the pattern is valid
	sort.Strings(names)
	return names
}

// Source returns the text of one schema file.
func Source(name string) ([]byte, error) { return files.ReadFile(name) }

// Set is every schema file, compiled.
type Set struct {
	schemas map[string]*jsonschema.Schema
}

// Compile compiles every file, with "format" asserted (date-time and the
// rest are checked, not only annotated).
func Compile() (*Set, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	names := Files()
	for _, name := range names {
		b, err := files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", name, err)
		}
		if err := c.AddResource(Base+name, doc); err != nil {
			return nil, fmt.Errorf("schema %s: %w", name, err)
		}
	}
	s := &Set{schemas: map[string]*jsonschema.Schema{}}
	for _, name := range names {
		sch, err := c.Compile(Base + name)
		if err != nil {
			return nil, fmt.Errorf("compile schema %s: %w", name, err)
		}
		s.schemas[name] = sch
	}
	return s, nil
}

// Validate checks the JSON text doc against the schema file name.
func (s *Set) Validate(name string, doc []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return s.ValidateValue(name, v)
}

// ValidateValue checks a decoded value (as jsonschema.UnmarshalJSON makes, or
// plain maps, slices, strings, bools and json.Number) against the schema
// file name.
func (s *Set) ValidateValue(name string, v any) error {
	sch, ok := s.schemas[name]
	if !ok {
		return fmt.Errorf("no schema %s", name)
	}
	return sch.Validate(v)
}
