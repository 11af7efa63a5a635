package main

import (
	"bytes"
	"encoding/json"
)

// jsonUnmarshalStrict refuses unknown fields, so a typo in a rules file shows.
func jsonUnmarshalStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}
