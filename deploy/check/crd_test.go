package check

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// KEDA's objects are checked against KEDA's own CustomResourceDefinition, the OpenAPI v3 schema
// the API server validates them with, not against KEDA's Go types: those pull client-go and
// controller-runtime, half an hour of compiling on a cold 2-core machine. The CRD ships in
// KEDA's Go module zip, which `go mod download` fetches (and checks against the checksum
// database) without compiling anything; its hash is pinned here as well.
const (
	kedaModule     = "github.com/kedacore/keda/v2"
	kedaVersion    = "v2.21.0"
	kedaModuleSum  = "h1:R6z2HZvstK4RLUMxroNACzBj74xGxt3kG59b5Xc+Xps="
	kedaCRDPath    = "config/crd/bases/keda.sh_scaledobjects.yaml"
	kedaAPIVersion = "keda.sh/v1alpha1"
)

// crdValidator validates objects of one kind and version the way the API server does with a
// structural CRD, strictly: the schema's types, formats, enums, bounds and required fields; a
// field the schema does not declare is an error (the API server would prune it silently)
// unless the schema says x-kubernetes-preserve-unknown-fields; metadata decodes strictly into
// ObjectMeta; and the CRD's CEL rules (x-kubernetes-validations), each of which must have a Go
// translation in celRules, or the validator refuses to be built.
type crdValidator struct {
	apiVersion, kind string
	schema           *jsonschema.Schema
	rules            []celRule
}

// celRule is one x-kubernetes-validations rule of the CRD, at a path of the object.
type celRule struct {
	path, rule, message string
	check               func(self map[string]any) bool
}

// celRules are the Go translations of the CEL rules of the CRDs checked here, by path and
// rule text. A CRD update that adds or changes a rule fails until it is translated here.
var celRules = map[string]func(self map[string]any) bool{
	// keda.sh_scaledobjects.yaml v2.21.0, spec.
	".spec\x00!has(self.minReplicaCount) || self.minReplicaCount <= (has(self.maxReplicaCount) ? self.maxReplicaCount : 100)": func(self map[string]any) bool {
		minR, ok := self["minReplicaCount"]
		if !ok {
			return true
		}
		maxR, ok := self["maxReplicaCount"]
		if !ok {
			maxR = json.Number("100")
		}
		return number(minR) <= number(maxR)
	},
}

func number(v any) float64 {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		if err != nil {
			return math.NaN()
		}
		return f
	case float64:
		return n
	}
	return math.NaN()
}

var (
	kedaOnce sync.Once
	kedaVal  *crdValidator
	errKeda  error
)

// kedaScaledObjects is the validator of KEDA's ScaledObject CRD at the pinned version.
func kedaScaledObjects(t testing.TB) *crdValidator {
	t.Helper()
	kedaOnce.Do(func() {
		var crd []byte
		crd, errKeda = moduleFile(kedaModule, kedaVersion, kedaModuleSum, kedaCRDPath)
		if errKeda == nil {
			kedaVal, errKeda = newCRDValidator(crd, "v1alpha1")
		}
	})
	if errKeda != nil {
		t.Fatal(errKeda)
	}
	return kedaVal
}

// moduleFile is a file of a Go module's zip, fetched by `go mod download` into the module
// cache (outside any module, so that nothing is added to this module's go.mod); the module's
// hash must be the one pinned.
func moduleFile(mod, version, sum, rel string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "check-moddownload-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("go", "mod", "download", "-json", mod+"@"+version)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	var info struct{ Dir, Sum, Error string }
	err = cmd.Run()
	if err == nil {
		err = json.Unmarshal(out.Bytes(), &info)
	}
	if err == nil && info.Error != "" {
		err = errors.New(info.Error)
	}
	if err != nil {
		return nil, fmt.Errorf("go mod download -json %s@%s: %w\n%s%s", mod, version, err, out.String(), errb.String())
	}
	if info.Sum != sum {
		return nil, fmt.Errorf("%s@%s has hash %s, pinned %s", mod, version, info.Sum, sum)
	}
	return os.ReadFile(filepath.Join(info.Dir, filepath.FromSlash(rel)))
}

// newCRDValidator builds the validator of a CRD's version from its YAML.
func newCRDValidator(crdYAML []byte, version string) (*crdValidator, error) {
	var crd struct {
		Spec struct {
			Group string `json:"group"`
			Names struct {
				Kind string `json:"kind"`
			} `json:"names"`
			Versions []struct {
				Name   string `json:"name"`
				Served bool   `json:"served"`
				Schema struct {
					OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(crdYAML, &crd); err != nil {
		return nil, fmt.Errorf("the CRD: %w", err)
	}
	v := &crdValidator{apiVersion: crd.Spec.Group + "/" + version, kind: crd.Spec.Names.Kind}
	var openAPI map[string]any
	for _, ver := range crd.Spec.Versions {
		if ver.Name == version && ver.Served {
			openAPI = ver.Schema.OpenAPIV3Schema
		}
	}
	if openAPI == nil {
		return nil, fmt.Errorf("the %s CRD serves no version %s with a schema", v.kind, version)
	}
	// Through JSON, so that numbers are json.Number as in the instances.
	raw, err := json.Marshal(openAPI)
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	converted, err := v.convert(doc.(map[string]any), "", false)
	if err != nil {
		return nil, fmt.Errorf("the %s CRD's schema: %w", v.kind, err)
	}
	// The API server takes apiVersion, kind and metadata at the root whether the schema
	// declares them or not.
	props, _ := converted["properties"].(map[string]any)
	if props == nil {
		props = map[string]any{}
		converted["properties"] = props
	}
	for name, typ := range map[string]string{"apiVersion": "string", "kind": "string", "metadata": "object"} {
		if _, ok := props[name]; !ok {
			props[name] = map[string]any{"type": typ}
		}
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft4) // OpenAPI 3.0's schema object is draft 4's, extended
	c.AssertFormat()
	c.RegisterFormat(&jsonschema.Format{Name: "int32", Validate: intFormat(math.MinInt32, math.MaxInt32)})
	c.RegisterFormat(&jsonschema.Format{Name: "int64", Validate: intFormat(math.MinInt64, math.MaxInt64)})
	url := "crd:///" + strings.ToLower(v.kind) + ".json"
	if err := c.AddResource(url, converted); err != nil {
		return nil, err
	}
	if v.schema, err = c.Compile(url); err != nil {
		return nil, err
	}
	return v, nil
}

func intFormat(lo, hi float64) func(any) error {
	return func(x any) error {
		n, ok := x.(json.Number)
		if !ok {
			return nil // formats apply to their type only; type: integer says the rest
		}
		f, err := n.Float64()
		if err != nil || f < lo || f > hi || f != math.Trunc(f) {
			return fmt.Errorf("%s is out of range", n)
		}
		return nil
	}
}

// convert turns a node of a CRD's structural schema into JSON Schema (draft 4), refusing
// unknown fields where the API server would prune them, and collects the CEL rules. A keyword
// it does not know is an error rather than ignored.
func (v *crdValidator) convert(s map[string]any, path string, inJunctor bool) (map[string]any, error) {
	out := map[string]any{}
	preserve := s["x-kubernetes-preserve-unknown-fields"] == true
	for k, val := range s {
		switch k {
		case "description", "title", "example", "externalDocs", "default",
			"x-kubernetes-list-map-keys", "x-kubernetes-map-type", "x-kubernetes-preserve-unknown-fields":
			// Documentation, defaulting (the API server's, before validation) and merge hints.
		case "x-kubernetes-list-type":
			if val == "set" {
				out["uniqueItems"] = true
			}
		case "x-kubernetes-int-or-string":
			if _, ok := s["anyOf"]; !ok && val == true {
				out["anyOf"] = []any{map[string]any{"type": "integer"}, map[string]any{"type": "string"}}
			}
		case "x-kubernetes-validations":
			for _, r := range val.([]any) {
				rm := r.(map[string]any)
				rule, _ := rm["rule"].(string)
				msg, _ := rm["message"].(string)
				check, ok := celRules[path+"\x00"+rule]
				if !ok {
					return nil, fmt.Errorf("%s: CEL rule %q has no Go translation in celRules", path, rule)
				}
				v.rules = append(v.rules, celRule{path: path, rule: rule, message: msg, check: check})
			}
		case "nullable":
			// Handled with type below.
		case "format":
			switch val {
			case "int32", "int64", "date-time":
				out[k] = val
			default:
				return nil, fmt.Errorf("%s: format %v is not checked here (add it to newCRDValidator)", path, val)
			}
		case "type", "enum", "maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum",
			"maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "multipleOf",
			"required", "maxProperties", "minProperties":
			out[k] = val
		case "properties":
			props := map[string]any{}
			for name, p := range val.(map[string]any) {
				c, err := v.convert(p.(map[string]any), path+"."+name, inJunctor)
				if err != nil {
					return nil, err
				}
				props[name] = c
			}
			out[k] = props
		case "additionalProperties":
			if m, ok := val.(map[string]any); ok {
				c, err := v.convert(m, path+"[*]", inJunctor)
				if err != nil {
					return nil, err
				}
				out[k] = c
			} else {
				out[k] = val
			}
		case "items":
			m, ok := val.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s: items is not one schema", path)
			}
			c, err := v.convert(m, path+"[]", inJunctor)
			if err != nil {
				return nil, err
			}
			out[k] = c
		case "allOf", "anyOf", "oneOf":
			var list []any
			for _, sub := range val.([]any) {
				c, err := v.convert(sub.(map[string]any), path, true)
				if err != nil {
					return nil, err
				}
				list = append(list, c)
			}
			out[k] = list
		case "not":
			c, err := v.convert(val.(map[string]any), path, true)
			if err != nil {
				return nil, err
			}
			out[k] = c
		default:
			return nil, fmt.Errorf("%s: schema keyword %q is not understood here", path, k)
		}
	}
	if s["nullable"] == true {
		if t, ok := out["type"].(string); ok {
			out["type"] = []any{t, "null"}
		}
	}
	// A structural schema prunes what it does not declare: refuse it instead, except where the
	// schema preserves unknown fields, and except the object's metadata (ObjectMeta, decoded
	// strictly on its own in validate).
	if out["type"] == "object" && !inJunctor && !preserve && path != ".metadata" {
		if _, ok := out["additionalProperties"]; !ok {
			out["additionalProperties"] = false
		}
	}
	return out, nil
}

// validate checks one rendered object (YAML) against the CRD: apiVersion and kind, the
// schema, metadata as ObjectMeta, and the CEL rules. Duplicate keys are refused too.
func (v *crdValidator) validate(doc []byte) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		return err
	}
	obj, ok := inst.(map[string]any)
	if !ok {
		return fmt.Errorf("not an object")
	}
	if obj["apiVersion"] != v.apiVersion || obj["kind"] != v.kind {
		return fmt.Errorf("%v %v is not %s %s", obj["apiVersion"], obj["kind"], v.apiVersion, v.kind)
	}
	if err := v.schema.Validate(inst); err != nil {
		return err
	}
	var head struct {
		Metadata json.RawMessage `json:"metadata"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return err
	}
	if len(head.Metadata) == 0 {
		return fmt.Errorf("no metadata")
	}
	var meta metav1.ObjectMeta
	if err := yaml.UnmarshalStrict(head.Metadata, &meta); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if meta.Name == "" {
		return fmt.Errorf("metadata.name is empty")
	}
	for _, r := range v.rules {
		self, ok := at(obj, r.path)
		if !ok {
			continue // the API server applies a rule only where its field is present
		}
		if !r.check(self) {
			return fmt.Errorf("%s: %s (rule %s)", r.path, r.message, r.rule)
		}
	}
	return nil
}

// at is the object at a path of plain fields (".spec.x"); rules sit on objects only here.
func at(obj map[string]any, path string) (map[string]any, bool) {
	cur := obj
	for _, f := range strings.Split(strings.TrimPrefix(path, "."), ".") {
		if f == "" {
			continue
		}
		next, ok := cur[f].(map[string]any)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

// scaledObject is the part of a KEDA ScaledObject the chart's checks read, decoded after the
// object passed the CRD's schema (which is what makes the decoding strict).
type scaledObject struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     struct {
		ScaleTargetRef *struct {
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32    `json:"minReplicaCount"`
		MaxReplicaCount *int32    `json:"maxReplicaCount"`
		Triggers        []trigger `json:"triggers"`
	} `json:"spec"`
}

type trigger struct {
	Type              string            `json:"type"`
	Metadata          map[string]string `json:"metadata"`
	AuthenticationRef *struct {
		Name string `json:"name"`
	} `json:"authenticationRef"`
}

// TestKEDACRDValidation: the CRD validator refuses what the API server refuses (and what it
// would prune) and accepts a valid object, so that the chart's check can fail.
func TestKEDACRDValidation(t *testing.T) {
	t.Parallel()
	v := kedaScaledObjects(t)
	if len(v.rules) == 0 {
		t.Error("KEDA's CRD gave no CEL rule: its minReplicaCount <= maxReplicaCount rule is expected")
	}
	const valid = `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: r
  labels: {a: b}
spec:
  scaleTargetRef: {name: r}
  minReplicaCount: 1
  maxReplicaCount: 4
  triggers:
  - type: kafka
    metadata: {topic: t, lagThreshold: "100"}
    authenticationRef: {name: auth}
`
	if err := v.validate([]byte(valid)); err != nil {
		t.Fatalf("a valid ScaledObject is refused: %v", err)
	}
	for _, c := range []struct{ name, from, to, want string }{
		{"misspelt spec field", "minReplicaCount: 1", "minReplicas: 1", "minReplicas"},
		{"misspelt trigger field", "    authenticationRef:", "    authRef:", "authRef"},
		{"misspelt nested field", "authenticationRef: {name: auth}", "authenticationRef: {name: auth, namespace: x}", "namespace"},
		{"misspelt metadata field", "  labels: {a: b}", "  lables: {a: b}", "lables"},
		{"wrong type", "minReplicaCount: 1", "minReplicaCount: one", "minReplicaCount"},
		{"non-string trigger metadata", `lagThreshold: "100"`, "lagThreshold: 100", "lagThreshold"},
		{"out of int32", "maxReplicaCount: 4", "maxReplicaCount: 4294967296", "maxReplicaCount"},
		{"below minimum", "maxReplicaCount: 4", "maxReplicaCount: 0", "maxReplicaCount"},
		{"missing required", "  scaleTargetRef: {name: r}\n", "", "scaleTargetRef"},
		{"empty triggers", "  triggers:\n  - type: kafka\n    metadata: {topic: t, lagThreshold: \"100\"}\n    authenticationRef: {name: auth}\n", "  triggers: []\n", "triggers"},
		{"enum", "authenticationRef: {name: auth}", "authenticationRef: {name: auth, kind: Secret}", "kind"},
		{"CEL rule", "minReplicaCount: 1", "minReplicaCount: 5", "minReplicaCount must be less than or equal to maxReplicaCount"},
		{"duplicate key", "minReplicaCount: 1", "minReplicaCount: 1\n  minReplicaCount: 2", "minReplicaCount"},
		{"other kind", "kind: ScaledObject", "kind: ScaledJob", "ScaledJob"},
	} {
		doc := strings.Replace(valid, c.from, c.to, 1)
		if doc == valid {
			t.Fatalf("%s: the case changes nothing", c.name)
		}
		err := v.validate([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error naming %q", c.name, err, c.want)
		}
	}
}

// TestCRDConversionRefusesTheUnknown: a schema keyword, a format or a CEL rule the converter
// does not know stops it, rather than being ignored.
func TestCRDConversionRefusesTheUnknown(t *testing.T) {
	t.Parallel()
	crd := func(extra string) []byte {
		return []byte(`spec:
  group: example.com
  names: {kind: Thing}
  versions:
  - name: v1
    served: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
` + extra)
	}
	if _, err := newCRDValidator(crd(""), "v1"); err != nil {
		t.Fatalf("a plain CRD: %v", err)
	}
	for _, extra := range []string{
		"            x-kubernetes-embedded-resource: true\n",
		"            properties: {n: {type: string, format: quantity}}\n",
		"            x-kubernetes-validations: [{rule: 'self.a > 0'}]\n",
	} {
		if _, err := newCRDValidator(crd(extra), "v1"); err == nil {
			t.Errorf("the converter accepted %q", strings.TrimSpace(extra))
		}
	}
	if _, err := newCRDValidator(crd(""), "v2"); err == nil {
		t.Error("a version the CRD does not serve was accepted")
	}
	// x-kubernetes-preserve-unknown-fields keeps what it says.
	v, err := newCRDValidator(crd("            x-kubernetes-preserve-unknown-fields: true\n"), "v1")
	if err != nil {
		t.Fatal(err)
	}
	doc := "apiVersion: example.com/v1\nkind: Thing\nmetadata: {name: x}\nspec: {anything: 1}\n"
	if err := v.validate([]byte(doc)); err != nil {
		t.Errorf("preserve-unknown-fields: %v", err)
	}
	if err := v.validate([]byte(doc + "other: 1\n")); err == nil {
		t.Error("an unknown top-level field was accepted")
	}
}
