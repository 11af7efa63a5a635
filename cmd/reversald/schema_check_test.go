package main

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/consumer"
	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/schema"
)

// Every outcome and dead letter the end-to-end tests read back is held to
// the published schemas (schema/): stack.collect checks what its collector
// read when the test ends.

var (
	schemasOnce sync.Once
	schemas     *schema.Set
	errSchemas  error
)

func publishedSchemas(t testing.TB) *schema.Set {
	t.Helper()
	schemasOnce.Do(func() { schemas, errSchemas = schema.Compile() })
	if errSchemas != nil {
		t.Fatalf("compile the published schemas: %v", errSchemas)
	}
	return schemas
}

// checkOutcomes validates each outcome message against the schema of the
// current schema_version, and its event_id header against its value.
func checkOutcomes(t testing.TB, msgs []kafka.Message) {
	t.Helper()
	s := publishedSchemas(t)
	current := schema.OutcomeVersion(reversald.SchemaVersion)
	bad := 0
	for _, m := range msgs {
		if err := s.Validate(current, m.Value); err != nil {
			if bad++; bad <= 5 {
				t.Errorf("outcome at %d/%d does not validate against schema/%s: %v\n%s", m.Partition, m.Offset, current, err, m.Value)
			}
			continue
		}
		var o struct {
			EventID string `json:"event_id"`
		}
		_ = json.Unmarshal(m.Value, &o) // valid JSON: it validated
		if h, _ := kafkatest.Header(m, consumer.HeaderEventID); h != o.EventID {
			if bad++; bad <= 5 {
				t.Errorf("outcome at %d/%d: header event_id %q, value's %q", m.Partition, m.Offset, h, o.EventID)
			}
		}
	}
	if bad > 5 {
		t.Errorf("%d of %d outcomes break the schema (first 5 shown)", bad, len(msgs))
	}
}

// checkDeadLetters validates the headers of each dead letter against
// schema/dead-letter.schema.json. A repeated x-dlq-* header is an error too:
// a reader could not tell which one holds.
func checkDeadLetters(t testing.TB, msgs []kafka.Message) {
	t.Helper()
	s := publishedSchemas(t)
	for _, m := range msgs {
		hs := map[string]any{}
		for _, h := range m.Headers {
			if _, dup := hs[h.Key]; dup && strings.HasPrefix(h.Key, "x-dlq-") {
				t.Errorf("dead letter at %d/%d repeats header %s", m.Partition, m.Offset, h.Key)
			}
			hs[h.Key] = string(h.Value)
		}
		if err := s.ValidateValue(schema.DeadLetter, hs); err != nil {
			t.Errorf("dead letter at %d/%d: headers do not validate against schema/%s: %v\n%v", m.Partition, m.Offset, schema.DeadLetter, err, hs)
		}
	}
}
