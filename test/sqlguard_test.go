package test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sqlAllowList names, by "path/from/module/root.go:function", the places
// allowed to build SQL from non-constant parts, each with the reason it is
// safe. An entry that no longer matches anything fails the test, so the list
// cannot outlive the code it excuses.
var sqlAllowList = map[string]string{
	// Test-database helper (non-test file, used only by tests): CREATE and
	// DROP DATABASE take no parameters; the name is generated from
	// crypto/rand hex digits and quoted with pgx.Identifier.Sanitize.
	"store/postgres/pgtest/pgtest.go:NewDatabase": "database name generated, quoted as an identifier",
	// The benchmark's fresh databases: the same rule as pgtest.
	"bench/harness.go:createDB": "database name generated, quoted as an identifier",
	// The hourly and daily rollup reads are one query over two tables: the
	// table name and the date_bin step are compile-time constants
	// (rollupHourlySQL, rollupDailySQL), and Rollup picks one of the two.
	"store/postgres/rollup.go:rollupReadSQL": "table and step are constants of the package",
	"store/postgres/rollup.go:Rollup":        "one of the two constant rollup queries",
	// The Postgres broker's work-queue schema (watermill-sql SchemaAdapter
	// and OffsetsAdapter): one table set per topic, so the table names are
	// part of the SQL — built from the topic by messagesTable, groupsTable,
	// queueTable, deliveriesTable and offsetsTable and quoted with pgx.Identifier.Sanitize;
	// every value is a parameter ($n), except in the schema's DO block,
	// which takes none (the topic and group names there are quoted literals).
	"broker/postgres_queue.go:InsertQuery":              "topic tables quoted as identifiers; values are parameters",
	"broker/postgres_queue.go:SelectQuery":              "topic tables quoted as identifiers; values are parameters",
	"broker/postgres_queue.go:AckMessageQuery":          "topic tables quoted as identifiers; values are parameters",
	"broker/postgres_queue.go:nackQuery":                "topic tables quoted as identifiers; values are parameters",
	"broker/postgres_queue.go:BeforeSubscribingQueries": "topic tables quoted as identifiers; values are parameters",
	"broker/postgres_queue.go:deliveryQuery":            "topic tables quoted as identifiers; values are parameters",
	"broker/postgres_queue.go:undeliveryQuery":          "topic tables quoted as identifiers; values are parameters",
	"broker/postgres.go:nack":                           "runs nackQuery's SQL",
	"broker/postgres.go:countDelivery":                  "runs deliveryQuery's SQL",
	"broker/postgres.go:uncountDelivery":                "runs undeliveryQuery's SQL",
	"broker/postgres.go:queueStats":                     "topic tables quoted as identifiers; no values",
}

// sqlKeyword finds SQL in a string literal.
var sqlKeyword = regexp.MustCompile(`\b(SELECT|INSERT|UPDATE|DELETE|WHERE|VALUES)\b`)

// sqlFormatted finds SQL followed by a formatting verb.
var sqlFormatted = regexp.MustCompile(`\b(SELECT|INSERT|UPDATE|DELETE|WHERE|VALUES)\b[\s\S]*%[-+# 0-9.*]*[sdvqx]`)

// queryMethods are the database calls whose SQL argument must be constant,
// with that argument's index (pgx Pool/Conn/Tx, pgx.Batch, database/sql).
var queryMethods = map[string]int{
	"Exec": 1, "Query": 1, "QueryRow": 1, "Prepare": 2,
	"ExecContext": 1, "QueryContext": 1, "QueryRowContext": 1, "PrepareContext": 1,
	"Queue": 0,
}

// sqlFinding is one place where SQL is built or passed non-constantly.
type sqlFinding struct {
	key string // file:function, as in sqlAllowList
	pos token.Position
	msg string
}

// TestSQLOnlyWithParameters walks every non-test .go file of the module and
// fails when SQL is built with fmt.Sprintf or string concatenation, or when a
// query method gets SQL that is neither a literal nor a constant, outside
// sqlAllowList (SPEC §7: SQL only with parameters).
func TestSQLOnlyWithParameters(t *testing.T) {
	root := moduleRoot(t)
	fset := token.NewFileSet()
	pkgs := map[string][]*ast.File{} // by directory
	var findings []sqlFinding
	rel := map[*ast.File]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "vendor" || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(root, path)
		rel[f] = filepath.ToSlash(r)
		pkgs[filepath.Dir(path)] = append(pkgs[filepath.Dir(path)], f)
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, pkgs)

	checked := 0
	for _, files := range pkgs {
		consts := packageConsts(files)
		for _, f := range files {
			fs, n := checkSQLFile(fset, rel[f], f, files, consts)
			findings = append(findings, fs...)
			checked += n
		}
	}
	t.Logf("%d files, %d query call sites checked", len(rel), checked)
	require.Positive(t, checked, "the guard found no query call sites: is it still looking at the right calls?")

	used := map[string]bool{}
	for _, f := range findings {
		if _, ok := sqlAllowList[f.key]; ok {
			used[f.key] = true
			t.Logf("allowed (%s): %s: %s", sqlAllowList[f.key], f.key, f.msg)
			continue
		}
		t.Errorf("%s (%s): %s", f.pos, f.key, f.msg)
	}
	for _, k := range slices.Sorted(maps.Keys(sqlAllowList)) {
		assert.True(t, used[k], "allow-list entry %s matches nothing: remove it", k)
	}
}

// moduleRoot is the directory holding go.mod, above this test's directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, dir, parent, "go.mod not found")
		dir = parent
	}
}

// packageConsts is the names of the package-level constants of a package.
func packageConsts(files []*ast.File) map[string]bool {
	out := map[string]bool{}
	for _, f := range files {
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
				for _, s := range g.Specs {
					for _, n := range s.(*ast.ValueSpec).Names {
						out[n.Name] = true
					}
				}
			}
		}
	}
	return out
}

// checkSQLFile returns the findings of one file and the number of query call
// sites it checked.
func checkSQLFile(fset *token.FileSet, rel string, f *ast.File, pkgFiles []*ast.File, consts map[string]bool) ([]sqlFinding, int) {
	var (
		out     []sqlFinding
		checked int
	)
	fmtName := importName(f, "fmt")
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Body == nil {
			continue
		}
		key := rel + ":" + fn.Name.Name
		local := localConsts(fn)
		isConst := func(e ast.Expr) bool { return constExpr(e, consts, local) }
		report := func(n ast.Node, format string, args ...any) {
			out = append(out, sqlFinding{key: key, pos: fset.Position(n.Pos()), msg: fmt.Sprintf(format, args...)})
		}
		seen := map[ast.Node]bool{} // inner operands of a reported concatenation
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BinaryExpr:
				if n.Op != token.ADD || seen[n] {
					return true
				}
				operands := flattenAdd(n, seen)
				hasSQL, allConst := false, true
				for _, o := range operands {
					if s, ok := stringLit(o); ok && sqlKeyword.MatchString(s) {
						hasSQL = true
					}
					if !isConst(o) {
						allConst = false
					}
				}
				if hasSQL && !allConst {
					report(n, "SQL built by string concatenation")
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); ok && fmtName != "" && x.Name == fmtName &&
					(sel.Sel.Name == "Sprintf" || sel.Sel.Name == "Appendf" || sel.Sel.Name == "Fprintf") {
					i := 0
					if sel.Sel.Name != "Sprintf" {
						i = 1
					}
					if len(n.Args) > i {
						if s, ok := stringLit(n.Args[i]); ok && sqlFormatted.MatchString(s) {
							report(n, "SQL built with fmt.%s", sel.Sel.Name)
						}
					}
					return true
				}
				idx, ok := queryMethods[sel.Sel.Name]
				if !ok || len(n.Args) <= idx {
					return true
				}
				checked++
				arg := n.Args[idx]
				if isConst(arg) || constVar(arg, fn, isConst) || constParam(arg, fn, pkgFiles, isConst) {
					return true
				}
				report(n, "%s gets SQL that is not a literal or constant: %s", sel.Sel.Name, types.ExprString(arg))
			}
			return true
		})
	}
	return out, checked
}

// importName is the name under which f imports path ("" if it does not).
func importName(f *ast.File, path string) string {
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if p != path {
			continue
		}
		if imp.Name != nil {
			return imp.Name.Name
		}
		return filepath.Base(p)
	}
	return ""
}

// localConsts is the names of the constants declared inside fn.
func localConsts(fn *ast.FuncDecl) map[string]bool {
	out := map[string]bool{}
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		if g, ok := n.(*ast.GenDecl); ok && g.Tok == token.CONST {
			for _, s := range g.Specs {
				for _, id := range s.(*ast.ValueSpec).Names {
					out[id.Name] = true
				}
			}
		}
		return true
	})
	return out
}

// constExpr: a string literal, a constant's name, or a sum of those.
func constExpr(e ast.Expr, pkg, local map[string]bool) bool {
	switch e := e.(type) {
	case *ast.BasicLit:
		return true
	case *ast.Ident:
		return pkg[e.Name] || local[e.Name]
	case *ast.ParenExpr:
		return constExpr(e.X, pkg, local)
	case *ast.BinaryExpr:
		return e.Op == token.ADD && constExpr(e.X, pkg, local) && constExpr(e.Y, pkg, local)
	}
	return false
}

// constVar: a local variable of fn every assignment of which is constant
// (query := aSQL; if daily { query = bSQL }).
func constVar(e ast.Expr, fn *ast.FuncDecl, isConst func(ast.Expr) bool) bool {
	id, ok := e.(*ast.Ident)
	if !ok {
		return false
	}
	assigned, allConst := 0, true
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			for i, l := range n.Lhs {
				if li, ok := l.(*ast.Ident); ok && li.Name == id.Name {
					assigned++
					if len(n.Rhs) != len(n.Lhs) || !isConst(n.Rhs[i]) {
						allConst = false
					}
				}
			}
		case *ast.ValueSpec:
			for i, li := range n.Names {
				if li.Name == id.Name {
					assigned++
					if i >= len(n.Values) || !isConst(n.Values[i]) {
						allConst = false
					}
				}
			}
		}
		return true
	})
	return assigned > 0 && allConst
}

// constParam: a parameter of fn that every call of fn in the package (by
// name: f(...) or x.f(...)) passes a constant for.
func constParam(e ast.Expr, fn *ast.FuncDecl, files []*ast.File, isConst func(ast.Expr) bool) bool {
	id, ok := e.(*ast.Ident)
	if !ok {
		return false
	}
	idx, i := -1, 0
	for _, field := range fn.Type.Params.List {
		for _, n := range field.Names {
			if n.Name == id.Name {
				idx = i
			}
			i++
		}
		if len(field.Names) == 0 {
			i++
		}
	}
	if idx < 0 {
		return false
	}
	calls, allConst := 0, true
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			var name string
			switch fun := call.Fun.(type) {
			case *ast.Ident:
				name = fun.Name
			case *ast.SelectorExpr:
				name = fun.Sel.Name
			}
			if name != fn.Name.Name {
				return true
			}
			calls++
			// Caller-side constants are those of the caller's package,
			// which is fn's package: isConst knows them (local consts of
			// fn itself are not visible to callers, a harmless over-approximation).
			if len(call.Args) <= idx || !isConst(call.Args[idx]) {
				allConst = false
			}
			return true
		})
	}
	return calls > 0 && allConst
}

// flattenAdd lists the operands of a chain of +, marking the inner nodes.
func flattenAdd(e ast.Expr, seen map[ast.Node]bool) []ast.Expr {
	if p, ok := e.(*ast.ParenExpr); ok {
		return flattenAdd(p.X, seen)
	}
	b, ok := e.(*ast.BinaryExpr)
	if !ok || b.Op != token.ADD {
		return []ast.Expr{e}
	}
	seen[b] = true
	return append(flattenAdd(b.X, seen), flattenAdd(b.Y, seen)...)
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// TestSQLGuardFindsStringBuiltSQL: the guard itself catches what it must.
func TestSQLGuardFindsStringBuiltSQL(t *testing.T) {
	t.Parallel()
	src := `package p

import (
	"context"
	"fmt"
)

const okSQL = ` + "`SELECT 1 WHERE x = $1`" + `

type db interface{ Exec(context.Context, string, ...any) (any, error) }

func good(ctx context.Context, d db, daily bool) {
	const local = "DELETE FROM t WHERE pk = $1"
	q := okSQL
	if daily {
		q = local
	}
	d.Exec(ctx, okSQL, 1)
	d.Exec(ctx, "UPDATE t SET a = $1", 1)
	d.Exec(ctx, q, 1)
	run(ctx, d, okSQL)
	_ = fmt.Sprintf("deleted %d rows", 3)
}

func run(ctx context.Context, d db, sql string) { d.Exec(ctx, sql) }

func bad(ctx context.Context, d db, table string, pk int64) {
	d.Exec(ctx, fmt.Sprintf("SELECT * FROM t WHERE pk = %d", pk))
	d.Exec(ctx, "DELETE FROM " + table + " WHERE pk = $1", pk)
	q := "SELECT 1"
	q = q + table
	d.Exec(ctx, q)
}
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", src, parser.SkipObjectResolution)
	require.NoError(t, err)
	files := []*ast.File{f}
	findings, checked := checkSQLFile(fset, "p.go", f, files, packageConsts(files))
	assert.Equal(t, 7, checked)
	var got []string
	for _, fd := range findings {
		got = append(got, fmt.Sprintf("%s:%d %s", fd.key, fd.pos.Line, fd.msg))
	}
	assert.Equal(t, []string{
		"p.go:bad:28 Exec gets SQL that is not a literal or constant: fmt.Sprintf(\"SELECT * FROM t WHERE pk = %d\", pk)",
		"p.go:bad:28 SQL built with fmt.Sprintf",
		"p.go:bad:29 Exec gets SQL that is not a literal or constant: \"DELETE FROM \" + table + \" WHERE pk = $1\"",
		"p.go:bad:29 SQL built by string concatenation",
		"p.go:bad:32 Exec gets SQL that is not a literal or constant: q",
	}, got)
}
