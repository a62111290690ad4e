package usersync

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func TestJSONFile(t *testing.T) {
	cfg := impConfig(t)
	clock := newImpClock()
	users := impSeededList(t)
	impApply(t, impNew(t, cfg, clock), users, ApplyOptions{})
	data, err := os.ReadFile(cfg.Import.JSONFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc importDocument
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("import.json is not the document: %v", err)
	}

	t.Run("it holds the plan, the options, the result and the applied import", func(t *testing.T) {
		if doc.Version != importDocumentVersion || doc.Plan == nil || len(doc.Plan.Creates) != 9 ||
			doc.Result.Created != 9 || doc.State.Sequence != 1 || len(doc.State.Users) != 9 {
			t.Errorf("document: version %d, creates %d, result %+v, state sequence %d with %d users",
				doc.Version, len(doc.Plan.Creates), doc.Result, doc.State.Sequence, len(doc.State.Users))
		}
		if len(doc.Plan.Excluded) != 1 || !strings.Contains(doc.Plan.Excluded[0].DN, "PBX Service") {
			t.Errorf("excluded %+v, want the service account", doc.Plan.Excluded)
		}
	})
	t.Run("its top-level fields come in a fixed order", func(t *testing.T) {
		var keys []string
		dec := json.NewDecoder(bytes.NewReader(data))
		_, _ = dec.Token() // {
		for dec.More() {
			k, _ := dec.Token()
			keys = append(keys, k.(string))
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				t.Fatal(err)
			}
		}
		if got := strings.Join(keys, ","); got != "version,plan,options,result,state" {
			t.Errorf("keys %s", got)
		}
	})
	t.Run("empty lists are [] rather than null", func(t *testing.T) {
		if bytes.Contains(data, []byte("null")) {
			t.Errorf("import.json has a null:\n%s", data)
		}
	})
	t.Run("the same import gives the same file", func(t *testing.T) {
		again := impConfig(t)
		impApply(t, impNew(t, again, newImpClock()), users, ApplyOptions{})
		other, err := os.ReadFile(again.Import.JSONFile)
		if err != nil || !bytes.Equal(other, data) {
			t.Errorf("a second import of the same users wrote another file (%v)", err)
		}
	})
}

// TestImportDocumentIsEncodedAsTheEncoderWould: the document written one item
// at a time is, byte for byte, what json.Encoder with a two-space indent
// writes, with every list filled, empty or nil, and with values that spell a
// list's key.
func TestImportDocumentIsEncodedAsTheEncoderWould(t *testing.T) {
	user := func(n string) ImportUser {
		return ImportUser{GUID: "guid-" + n, Username: n, DisplayName: "A <b> & \"c\"\n\t\"creates\": []", Groups: []string{"g1", "g2"}}
	}
	prev := user("old")
	item := func(a Action, n string) PlanItem {
		return PlanItem{Action: a, User: user(n), Previous: &prev, Changes: []FieldChange{{Field: "phone", Old: "1", New: "2"}}}
	}
	full := &Plan{
		Mode:      ModeCreateUpdateRemove,
		Creates:   []PlanItem{item(ActionCreate, "c1"), item(ActionCreate, "c2")},
		Updates:   []PlanItem{item(ActionUpdate, "u1")},
		Disables:  []PlanItem{item(ActionDisable, "d1")},
		Removes:   []PlanItem{item(ActionRemove, "r1"), item(ActionRemove, "r2"), item(ActionRemove, "r3")},
		Kept:      []PlanItem{item(ActionKeep, "k1")},
		Unchanged: []PlanItem{item(ActionUnchanged, "n1")},
		Skipped:   []SkippedEntry{{GUID: "s", DN: "CN=\n    \"unchanged\": [],DC=x", Reason: "why"}},
		Excluded:  []SkippedEntry{},
	}
	emptyLists := &Plan{Creates: []PlanItem{}, Updates: []PlanItem{}, Disables: []PlanItem{}, Removes: []PlanItem{},
		Kept: []PlanItem{}, Unchanged: []PlanItem{}, Skipped: []SkippedEntry{}, Excluded: []SkippedEntry{}}
	for name, doc := range map[string]importDocument{
		"every list filled": {Version: 1, Plan: full, State: importDocumentState{Mode: ModeCreateUpdateRemove,
			PendingWebhookBatches: []string{"k"}, Users: []ImportUser{user("a"), user("b")}}},
		"empty lists":    {Version: 1, Plan: emptyLists, State: importDocumentState{PendingWebhookBatches: []string{}, Users: []ImportUser{}}},
		"nil lists":      {Version: 1, Plan: &Plan{}},
		"only the users": {Version: 1, Plan: emptyLists, State: importDocumentState{Users: []ImportUser{user("a")}}},
	} {
		t.Run(name, func(t *testing.T) {
			var want bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetIndent("", "  ")
			if err := enc.Encode(doc); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if err := encodeImportDocument(&got, doc); err != nil {
				t.Fatalf("encodeImportDocument: %v", err)
			}
			if got.String() != want.String() {
				t.Errorf("encodeImportDocument wrote\n%s\njson.Encoder writes\n%s", got.String(), want.String())
			}
		})
	}
}
