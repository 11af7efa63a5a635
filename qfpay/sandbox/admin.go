package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

const maxAdminBody = 8 << 20

// serveAdmin is the unsigned admin surface under /_sandbox/.
func (s *Sandbox) serveAdmin(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch r.Method + " " + r.URL.Path {
	case "GET /_sandbox/ledger":
		if otn := q.Get("out_trade_no"); otn != "" {
			writeJSON(w, http.StatusOK, s.Ledger(otn))
			return
		}
		writeJSON(w, http.StatusOK, s.Entries())
	case "GET /_sandbox/check":
		if err := s.CheckInvariants(); err != nil {
			writeJSON(w, http.StatusOK, map[string]any{"ok": false, "problems": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	case "GET /_sandbox/txns":
		if otn := q.Get("out_trade_no"); otn != "" {
			t, ok := s.Get(q.Get("mchid"), otn)
			if !ok {
				writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such transaction"})
				return
			}
			writeJSON(w, http.StatusOK, t)
			return
		}
		writeJSON(w, http.StatusOK, s.Txns())
	case "POST /_sandbox/txns":
		txns, err := decodeList[Txn](r)
		if err == nil {
			for _, t := range txns {
				if err = t.validate(); err != nil {
					break
				}
			}
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		for _, t := range txns {
			_ = s.Put(t)
		}
		writeJSON(w, http.StatusOK, map[string]int{"added": len(txns)})
	case "GET /_sandbox/rules":
		writeJSON(w, http.StatusOK, s.Rules())
	case "POST /_sandbox/rules":
		rules, err := decodeList[Rule](r)
		if err == nil {
			for i := range rules {
				if err = rules[i].validate(); err != nil {
					break
				}
			}
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		for _, rule := range rules {
			_ = s.AddRule(rule)
		}
		writeJSON(w, http.StatusOK, map[string]int{"added": len(rules)})
	case "POST /_sandbox/ratelimit":
		on, err := strconv.ParseBool(q.Get("on"))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want ?on=true or ?on=false"})
			return
		}
		s.SetRateLimit(on)
		writeJSON(w, http.StatusOK, map[string]bool{"rate_limit": on})
	case "POST /_sandbox/strict_range":
		on, err := strconv.ParseBool(q.Get("on"))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want ?on=true or ?on=false"})
			return
		}
		s.SetStrictRange(on)
		writeJSON(w, http.StatusOK, map[string]bool{"strict_range": on})
	case "POST /_sandbox/reset":
		s.Reset()
		writeJSON(w, http.StatusOK, map[string]bool{"reset": true})
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown admin endpoint " + r.Method + " " + r.URL.Path})
	}
}

// decodeList reads one JSON object or an array of them.
func decodeList[T any](r *http.Request) ([]T, error) {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxAdminBody))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	b = bytes.TrimSpace(b)
	var out []T
	if len(b) > 0 && b[0] == '[' {
		err = json.Unmarshal(b, &out)
	} else {
		var one T
		err = json.Unmarshal(b, &one)
		out = []T{one}
	}
	if err != nil {
		return nil, fmt.Errorf("decode body: %w", err)
	}
	return out, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
