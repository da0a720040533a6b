package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// The Grafana dashboard shipped in docs/grafana, checked for what Grafana
// needs to import it, and, in TestMetricsOfItsOwn, for asking only for
// metrics the agents serve. No JSON schema of Grafana's dashboards is to
// be had offline: its schema is CUE in Grafana's own (AGPL) source, and
// the npm package @grafana/schema ships it as TypeScript types only. The
// structs below take the fields and types of its Dashboard, Panel and
// GridPos (raw/dashboard/x/types.gen.d.ts, 13.2.3): decoding fails on a
// field of the wrong type, and the checks require what it requires
// (schemaVersion; a panel's type; h, w, x and y) and what an importable
// dashboard of beacon's needs besides.

type dashboard struct {
	UID           string   `json:"uid"`
	Title         string   `json:"title"`
	SchemaVersion int      `json:"schemaVersion"`
	Version       *int     `json:"version"`
	Editable      *bool    `json:"editable"`
	GraphTooltip  *int     `json:"graphTooltip"`
	Refresh       string   `json:"refresh"`
	Timezone      string   `json:"timezone"`
	Tags          []string `json:"tags"`
	Panels        []panel  `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Time struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"time"`
}

type panel struct {
	ID      *int   `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos *struct {
		H *int `json:"h"`
		W *int `json:"w"`
		X *int `json:"x"`
		Y *int `json:"y"`
	} `json:"gridPos"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// panelTypes are Grafana's core panel types this dashboard may use.
var panelTypes = map[string]bool{"row": true, "timeseries": true, "stat": true, "gauge": true, "bargauge": true, "table": true, "text": true, "heatmap": true}

// loadDashboard parses the dashboard and checks its structure; it
// returns the dashboard and every PromQL expression in it.
func loadDashboard(t *testing.T, path string) (*dashboard, []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion < 36 || len(d.Panels) == 0 || d.Time.From == "" {
		t.Fatalf("%s: title %q, uid %q, schemaVersion %d, %d panels, time from %q: each is needed", path, d.Title, d.UID, d.SchemaVersion, len(d.Panels), d.Time.From)
	}
	ids := map[int]bool{}
	var exprs []string
	for i, p := range d.Panels {
		where := fmt.Sprintf("panel %d %q", i, p.Title)
		switch {
		case p.ID == nil || ids[*p.ID]:
			t.Errorf("%s: no id, or one used before", where)
		case !panelTypes[p.Type] || p.Title == "":
			t.Errorf("%s: type %q, title %q", where, p.Type, p.Title)
		case p.GridPos == nil || p.GridPos.H == nil || p.GridPos.W == nil || p.GridPos.X == nil || p.GridPos.Y == nil:
			t.Errorf("%s: gridPos needs h, w, x and y", where)
		case *p.GridPos.H < 1 || *p.GridPos.W < 1 || *p.GridPos.X < 0 || *p.GridPos.Y < 0 || *p.GridPos.X+*p.GridPos.W > 24:
			t.Errorf("%s: gridPos %d,%d %dx%d outside Grafana's 24 columns", where, *p.GridPos.X, *p.GridPos.Y, *p.GridPos.W, *p.GridPos.H)
		}
		if p.ID != nil {
			ids[*p.ID] = true
		}
		if p.Type == "row" || p.Type == "text" {
			continue
		}
		if len(p.Targets) == 0 || p.Datasource == nil || p.Datasource.Type != "prometheus" {
			t.Errorf("%s: needs targets and a prometheus datasource", where)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] || strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s: target %q: a refId of its own and an expr are needed", where, tg.RefID)
			}
			refs[tg.RefID] = true
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		var q struct {
			Query string `json:"query"`
		}
		if v.Type == "query" && json.Unmarshal(v.Query, &q) == nil {
			if m := labelValues.FindStringSubmatch(q.Query); m != nil {
				exprs = append(exprs, m[1])
			} else {
				t.Errorf("variable %s: query %q is not label_values(METRIC, LABEL)", v.Name, q.Query)
			}
		}
	}
	return &d, exprs
}

var (
	labelValues = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	// What of a PromQL expression is not a metric name: strings, label
	// matchers, grouping clauses, ranges, Grafana variables.
	notNames = []*regexp.Regexp{
		regexp.MustCompile(`\$\{[^}]*\}|\$[a-zA-Z_]+`),
		regexp.MustCompile(`"(\\.|[^"\\])*"`),
		regexp.MustCompile(`\{[^}]*\}`),
		regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`),
		regexp.MustCompile(`\[[^\]]*\]`),
	}
	identifier = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	keywords   = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}
)

// metricNames are the metric names expr selects (functions and keywords
// left out).
func metricNames(expr string) []string {
	for _, re := range notNames {
		expr = re.ReplaceAllString(expr, " ")
	}
	var out []string
	for _, loc := range identifier.FindAllStringIndex(expr, -1) {
		if loc[0] > 0 && strings.ContainsRune("0123456789.", rune(expr[loc[0]-1])) {
			continue // a number's unit (5m), or the tail of a number
		}
		name := expr[loc[0]:loc[1]]
		if strings.HasPrefix(strings.TrimLeft(expr[loc[1]:], " \t\n"), "(") || keywords[strings.ToLower(name)] {
			continue // a function, an aggregation, a keyword
		}
		out = append(out, name)
	}
	return out
}

// checkDashboard: every metric the dashboard asks for is served.
func checkDashboard(t *testing.T, path string, served map[string]bool) {
	t.Helper()
	_, exprs := loadDashboard(t, path)
	asked := 0
	for _, e := range exprs {
		names := metricNames(e)
		if len(names) == 0 {
			t.Errorf("dashboard: %q selects no metric", e)
		}
		for _, n := range names {
			asked++
			if !served[n] {
				t.Errorf("dashboard: %q asks for %s, which no agent serves", e, n)
			}
		}
	}
	if asked == 0 {
		t.Error("dashboard: no metric asked for")
	}
}

// The dashboard parses as Grafana needs it, and the expression reader
// finds the metric names (and only them) in the shapes it uses.
func TestDashboardStructure(t *testing.T) {
	_, exprs := loadDashboard(t, "../docs/grafana/beacon.json")
	if len(exprs) < 15 {
		t.Errorf("%d expressions", len(exprs))
	}
	for expr, want := range map[string]string{
		`histogram_quantile(0.99, sum by (le, transport) (rate(beacon_dns_query_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`: "beacon_dns_query_duration_seconds_bucket",
		`max by (queue) (beacon_queue_messages{instance=~"$instance",state="dead"})`:                                                                 "beacon_queue_messages",
		`sum(rate(a_total[5m])) / sum(b) and on (x) c offset 5m`:                                                                                     "a_total b c",
		`beacon_catalog_lag_seconds{instance=~"$instance"} > bool 1`:                                                                                 "beacon_catalog_lag_seconds",
	} {
		if got := strings.Join(metricNames(expr), " "); got != want {
			t.Errorf("metricNames(%s) = %q, want %q", expr, got, want)
		}
	}
}
