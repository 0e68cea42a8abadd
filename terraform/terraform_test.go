// Package terraform_test holds the Terraform configuration in this directory
// against the Go code it deploys. No provider can be downloaded in CI, so
// `terraform validate` cannot run; instead this test parses the .tf files with
// hashicorp/hcl and the Go sources with go/parser and checks that:
//
//   - every function's entry point is registered in the root package, with the
//     signature its trigger needs (CloudEvent for an Eventarc trigger, HTTP
//     otherwise: a push subscription's target reads the push request itself);
//   - every environment variable Terraform sets exists in that function's
//     config struct (shared/config), every required one is set, and secrets
//     come from Secret Manager;
//   - every jsonPayload field a log filter reads, and every event value it
//     matches, is one the code writes (shared/logging/fields.go);
//   - every Firestore index the code needs (shared/store/indexes.json) exists;
//   - the dashboard and alerts only name log-based metrics that exist, and a
//     few timeouts and the runtime agree with each other and with go.mod;
//   - every moved block goes from an address no longer declared to an
//     instance that is (moves_check.py proves the plan in CI).
//
// Functions are read through local.functions (each.value.NAME of a for_each
// instance, or local.functions.KEY.NAME).
package terraform_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// root is the module root, seen from this package's directory.
const root = ".."

const functionsFrameworkImport = "github.com/GoogleCloudPlatform/functions-framework-go/functions"

// pendingLogFields are jsonPayload fields Terraform reads that the code does
// not write yet, with what they must mean. The test logs them instead of
// failing; once fields.go defines one, drop it from here.
var pendingLogFields = map[string]string{}

// --- Terraform side --------------------------------------------------------

type tfFile struct {
	name string
	src  []byte
	body *hclsyntax.Body
}

type tfBlock struct {
	*hclsyntax.Block
	file *tfFile
}

type module struct {
	files  []*tfFile
	blocks []tfBlock // top-level blocks of every file
	locals map[string]tfExpr
}

type tfExpr struct {
	hclsyntax.Expression
	file *tfFile
}

func (e tfExpr) raw() string { return string(e.Range().SliceBytes(e.file.src)) }

func (e tfExpr) pos() string { return fmt.Sprintf("%s:%d", e.file.name, e.Range().Start.Line) }

// literal evaluates an expression that needs no variables.
func (e tfExpr) literal() (string, bool) {
	v, diags := e.Value(nil)
	if diags.HasErrors() || v.IsNull() || !v.IsKnown() {
		return "", false
	}
	switch {
	case v.Type().FriendlyName() == "string":
		return v.AsString(), true
	case v.Type().FriendlyName() == "number":
		return v.AsBigFloat().Text('f', -1), true
	case v.Type().FriendlyName() == "bool":
		return strconv.FormatBool(v.True()), true
	}
	return "", false
}

func loadModule(t *testing.T) *module {
	t.Helper()
	names, err := filepath.Glob("*.tf")
	if err != nil || len(names) == 0 {
		t.Fatalf("no .tf files in terraform/ (err %v)", err)
	}
	m := &module{locals: map[string]tfExpr{}}
	for _, name := range names {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatalf("parse %s: %s", name, diags.Error())
		}
		tf := &tfFile{name: name, src: src, body: f.Body.(*hclsyntax.Body)}
		m.files = append(m.files, tf)
		for _, b := range tf.body.Blocks {
			m.blocks = append(m.blocks, tfBlock{b, tf})
			if b.Type == "locals" {
				for name, a := range b.Body.Attributes {
					m.locals[name] = tfExpr{a.Expr, tf}
				}
			}
		}
	}
	return m
}

// resources returns the resource (or data, with kind "data") blocks of a type.
func (m *module) resources(kind, typ string) []tfBlock {
	var out []tfBlock
	for _, b := range m.blocks {
		if b.Type == kind && len(b.Labels) == 2 && b.Labels[0] == typ {
			out = append(out, b)
		}
	}
	return out
}

func (b tfBlock) attr(name string) (tfExpr, bool) {
	a, ok := b.Body.Attributes[name]
	if !ok {
		return tfExpr{}, false
	}
	return tfExpr{a.Expr, b.file}, true
}

func (b tfBlock) literal(name string) (string, bool) {
	e, ok := b.attr(name)
	if !ok {
		return "", false
	}
	return e.literal()
}

func (b tfBlock) children(typ string) []tfBlock {
	var out []tfBlock
	for _, c := range b.Body.Blocks {
		if c.Type == typ {
			out = append(out, tfBlock{c, b.file})
		}
	}
	return out
}

func (b tfBlock) child(typ string) (tfBlock, bool) {
	c := b.children(typ)
	if len(c) == 0 {
		return tfBlock{}, false
	}
	return c[0], true
}

// nested returns the blocks of a type, including the content of
// `dynamic "typ"` blocks.
func (b tfBlock) nested(typ string) []tfBlock {
	out := b.children(typ)
	for _, d := range b.children("dynamic") {
		if len(d.Labels) == 1 && d.Labels[0] == typ {
			out = append(out, d.children("content")...)
		}
	}
	return out
}

func (b tfBlock) addr() string { return strings.Join(b.Labels, ".") }

// each is what `each.key` and `each.value` stand for in one instance of a
// resource with for_each (nil outside one).
type each struct {
	key   string
	value tfExpr
}

// deref follows a reference (local.NAME.ATTR..., each.value.ATTR... or
// ITERATOR.value.ATTR... of a dynamic block, given as iter) through object
// constructors to the expression it designates. Anything else is returned as
// it is; ok is false for a reference it cannot follow.
func (m *module) deref(e tfExpr, ea *each, iter map[string]tfExpr) (tfExpr, bool) {
	x, isRef := e.Expression.(*hclsyntax.ScopeTraversalExpr)
	if !isRef || len(x.Traversal) < 2 {
		return e, true
	}
	var cur tfExpr
	steps := x.Traversal[1:]
	name := func(s hcl.Traverser) string {
		switch st := s.(type) {
		case hcl.TraverseAttr:
			return st.Name
		case hcl.TraverseIndex:
			if st.Key.Type().FriendlyName() == "string" {
				return st.Key.AsString()
			}
		}
		return ""
	}
	root := x.Traversal.RootName()
	switch {
	case root == "local":
		l, ok := m.locals[name(steps[0])]
		if !ok {
			return e, false
		}
		cur, steps = l, steps[1:]
	case root == "each" && ea != nil && name(steps[0]) == "value":
		cur, steps = ea.value, steps[1:]
	case iter[root].Expression != nil && name(steps[0]) == "value":
		cur, steps = iter[root], steps[1:]
	default:
		return e, false
	}
	for _, st := range steps {
		c, ok := m.deref(cur, ea, iter)
		if !ok {
			return e, false
		}
		if cur, ok = c.item(name(st)); !ok {
			return e, false
		}
	}
	return m.deref(cur, ea, iter)
}

// item is the value of key name in an object constructor.
func (e tfExpr) item(name string) (tfExpr, bool) {
	obj, ok := e.Expression.(*hclsyntax.ObjectConsExpr)
	if !ok {
		return tfExpr{}, false
	}
	for _, it := range obj.Items {
		k := hcl.ExprAsKeyword(it.KeyExpr)
		if k == "" {
			k, _ = tfExpr{it.KeyExpr, e.file}.literal()
		}
		if k == name {
			return tfExpr{it.ValueExpr, e.file}, true
		}
	}
	return tfExpr{}, false
}

// objectKeys lists the keys of an object-valued expression: an object
// constructor, merge() of such, or a reference to a local holding one.
func (m *module) objectKeys(e tfExpr) ([]string, error) { return m.objectKeysIn(e, nil) }

// objectKeysIn is objectKeys in one instance of a for_each resource
// (each.value.NAME is followed too).
func (m *module) objectKeysIn(e tfExpr, ea *each) ([]string, error) {
	switch x := e.Expression.(type) {
	case *hclsyntax.ObjectConsExpr:
		var keys []string
		for _, item := range x.Items {
			if k := hcl.ExprAsKeyword(item.KeyExpr); k != "" {
				keys = append(keys, k)
				continue
			}
			k, ok := tfExpr{item.KeyExpr, e.file}.literal()
			if !ok {
				return nil, fmt.Errorf("%s: key %s is not a literal", e.pos(), tfExpr{item.KeyExpr, e.file}.raw())
			}
			keys = append(keys, k)
		}
		return keys, nil
	case *hclsyntax.FunctionCallExpr:
		if x.Name == "tomap" && len(x.Args) == 1 {
			return m.objectKeysIn(tfExpr{x.Args[0], e.file}, ea)
		}
		if x.Name != "merge" {
			break
		}
		var keys []string
		for _, a := range x.Args {
			k, err := m.objectKeysIn(tfExpr{a, e.file}, ea)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k...)
		}
		return keys, nil
	case *hclsyntax.ForExpr: // {for k, v in OBJ : k => ... if ...}: at most OBJ's keys
		if kt, ok := x.KeyExpr.(*hclsyntax.ScopeTraversalExpr); ok && x.KeyVar != "" && len(kt.Traversal) == 1 && kt.Traversal.RootName() == x.KeyVar {
			return m.objectKeysIn(tfExpr{x.CollExpr, e.file}, ea)
		}
	case *hclsyntax.ConditionalExpr: // either branch may be chosen: both count
		var keys []string
		for _, branch := range []hclsyntax.Expression{x.TrueResult, x.FalseResult} {
			k, err := m.objectKeysIn(tfExpr{branch, e.file}, ea)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k...)
		}
		return keys, nil
	case *hclsyntax.ScopeTraversalExpr:
		if d, ok := m.deref(e, ea, nil); ok && d.Expression != e.Expression {
			return m.objectKeysIn(d, ea)
		}
		if x.Traversal.RootName() == "local" {
			return nil, fmt.Errorf("%s: %s is not defined (or not an object)", e.pos(), e.raw())
		}
	}
	return nil, fmt.Errorf("%s: cannot read the keys of %q (use an object, merge(), tomap(), a conditional, {for k, v in OBJ : k => ...}, a local or each.value)", e.pos(), e.raw())
}

// listElems lists the elements of a list-valued expression: a tuple
// constructor, concat() of such, a conditional (both branches count) or a
// reference to one.
func (m *module) listElems(e tfExpr, ea *each) ([]tfExpr, error) {
	d, ok := m.deref(e, ea, nil)
	if !ok {
		return nil, fmt.Errorf("%s: cannot follow %s", e.pos(), e.raw())
	}
	var out []tfExpr
	switch x := d.Expression.(type) {
	case *hclsyntax.TupleConsExpr:
		for _, el := range x.Exprs {
			out = append(out, tfExpr{el, d.file})
		}
		return out, nil
	case *hclsyntax.FunctionCallExpr:
		if x.Name == "concat" {
			for _, a := range x.Args {
				l, err := m.listElems(tfExpr{a, d.file}, ea)
				if err != nil {
					return nil, err
				}
				out = append(out, l...)
			}
			return out, nil
		}
	case *hclsyntax.ConditionalExpr:
		for _, branch := range []hclsyntax.Expression{x.TrueResult, x.FalseResult} {
			l, err := m.listElems(tfExpr{branch, d.file}, ea)
			if err != nil {
				return nil, err
			}
			out = append(out, l...)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: cannot read the elements of %q (use a list, concat(), a conditional or a local)", d.pos(), d.raw())
}

// instances expands a resource block into its instances: one (each nil) for
// a block without for_each; one per key for for_each = an object (a local,
// a constructor), toset() of literal strings, or
// {for k, v in OBJ : k => v if COND}, COND on k only.
func (m *module) instances(b tfBlock) ([]*each, error) {
	fe, ok := b.attr("for_each")
	if !ok {
		return []*each{nil}, nil
	}
	coll, cond, keyVar := fe, hclsyntax.Expression(nil), ""
	if x, isFor := fe.Expression.(*hclsyntax.ForExpr); isFor {
		if v, ok := x.ValExpr.(*hclsyntax.ScopeTraversalExpr); !ok || x.KeyExpr == nil || len(v.Traversal) != 1 || v.Traversal.RootName() != x.ValVar {
			return nil, fmt.Errorf("%s: for_each = %s: want {for k, v in OBJ : k => v if ...}", fe.pos(), fe.raw())
		}
		coll, cond, keyVar = tfExpr{x.CollExpr, fe.file}, x.CondExpr, x.KeyVar
	}
	if call, ok := fe.Expression.(*hclsyntax.FunctionCallExpr); ok && call.Name == "toset" && len(call.Args) == 1 {
		var out []*each
		elems, err := m.listElems(tfExpr{call.Args[0], fe.file}, nil)
		for _, el := range elems {
			k, ok := el.literal()
			if !ok {
				return nil, fmt.Errorf("%s: toset() of %s: not a literal", fe.pos(), el.raw())
			}
			out = append(out, &each{key: k, value: el})
		}
		return out, err
	}
	d, ok := m.deref(coll, nil, nil)
	obj, isObj := d.Expression.(*hclsyntax.ObjectConsExpr)
	if !ok || !isObj {
		return nil, fmt.Errorf("%s: cannot read the instances of for_each = %s", fe.pos(), fe.raw())
	}
	var out []*each
	for _, item := range obj.Items {
		key := hcl.ExprAsKeyword(item.KeyExpr)
		if cond != nil {
			keep, err := keyCondition(cond, keyVar, key)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", fe.pos(), err)
			}
			if !keep {
				continue
			}
		}
		out = append(out, &each{key: key, value: tfExpr{item.ValueExpr, d.file}})
	}
	return out, nil
}

// keyCondition evaluates a for_each filter of the form K == "x" or K != "x",
// or such filters joined with || and &&.
func keyCondition(cond hclsyntax.Expression, keyVar, key string) (bool, error) {
	op, ok := cond.(*hclsyntax.BinaryOpExpr)
	if ok && (op.Op == hclsyntax.OpLogicalOr || op.Op == hclsyntax.OpLogicalAnd) {
		l, err := keyCondition(op.LHS, keyVar, key)
		if err != nil {
			return false, err
		}
		r, err := keyCondition(op.RHS, keyVar, key)
		if err != nil {
			return false, err
		}
		if op.Op == hclsyntax.OpLogicalOr {
			return l || r, nil
		}
		return l && r, nil
	}
	if ok && (op.Op == hclsyntax.OpEqual || op.Op == hclsyntax.OpNotEqual) {
		lhs, isRef := op.LHS.(*hclsyntax.ScopeTraversalExpr)
		rhs, isLit := op.RHS.(*hclsyntax.TemplateExpr)
		if isRef && isLit && len(lhs.Traversal) == 1 && lhs.Traversal.RootName() == keyVar && rhs.IsStringLiteral() {
			v, _ := rhs.Value(nil)
			return (v.AsString() == key) == (op.Op == hclsyntax.OpEqual), nil
		}
	}
	return false, fmt.Errorf("the for_each condition must be %s == \"...\" or %s != \"...\" (joined with || or &&)", keyVar, keyVar)
}

// tfFunction is one deployed function: an instance of a
// google_cloudfunctions2_function, with what its body takes from
// local.functions (through each.value or local.functions.KEY) resolved.
type tfFunction struct {
	block      tfBlock
	addr       string // google_cloudfunctions2_function.NAME or NAME["KEY"], as references spell it
	entryPoint string
	ingress    string
	timeout    int
	env        map[string]string // name -> "plain" or "secret"
}

// functionRefRE finds references to a function instance, spelled as tfFunction.addr.
var functionRefRE = regexp.MustCompile(`google_cloudfunctions2_function\.[A-Za-z0-9_-]+(\["[^"]+"\])?`)

func (m *module) functions(t *testing.T) []tfFunction {
	t.Helper()
	var out []tfFunction
	for _, b := range m.resources("resource", "google_cloudfunctions2_function") {
		insts, err := m.instances(b)
		if err != nil {
			t.Errorf("%s: %v", b.addr(), err)
			continue
		}
		for _, ea := range insts {
			addr := "google_cloudfunctions2_function." + b.Labels[1]
			if ea != nil {
				addr += fmt.Sprintf("[%q]", ea.key)
			}
			if f, ok := m.function(t, b, addr, ea); ok {
				out = append(out, f)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no google_cloudfunctions2_function in terraform/")
	}
	return out
}

func (m *module) function(t *testing.T, b tfBlock, addr string, ea *each) (tfFunction, bool) {
	t.Helper()
	f := tfFunction{block: b, addr: addr, env: map[string]string{}}
	literal := func(blk tfBlock, name string) (string, bool) {
		e, ok := blk.attr(name)
		if !ok {
			return "", false
		}
		if d, ok := m.deref(e, ea, nil); ok {
			return d.literal()
		}
		return "", false
	}
	bc, ok := b.child("build_config")
	if !ok {
		t.Errorf("%s: no build_config", addr)
		return f, false
	}
	if f.entryPoint, ok = literal(bc, "entry_point"); !ok {
		t.Errorf("%s: build_config.entry_point must be a literal string (in the block or in local.functions)", addr)
		return f, false
	}
	sc, ok := b.child("service_config")
	if !ok {
		t.Errorf("%s: no service_config", addr)
		return f, false
	}
	f.ingress, _ = literal(sc, "ingress_settings")
	if s, ok := literal(sc, "timeout_seconds"); ok {
		f.timeout, _ = strconv.Atoi(s)
	}
	if f.timeout <= 0 {
		t.Errorf("%s: service_config.timeout_seconds must be a literal number of seconds (in the block or in local.functions)", addr)
	}
	if e, ok := sc.attr("environment_variables"); ok {
		keys, err := m.objectKeysIn(e, ea)
		if err != nil {
			t.Errorf("%s environment_variables: %v", addr, err)
		}
		for _, k := range keys {
			f.env[k] = "plain"
		}
	}
	secret := func(k string) {
		if f.env[k] != "" {
			t.Errorf("%s: %s is set twice (environment_variables and secret_environment_variables)", addr, k)
			return
		}
		f.env[k] = "secret"
	}
	for _, s := range sc.children("secret_environment_variables") {
		if k, ok := s.literal("key"); ok {
			secret(k)
		} else {
			t.Errorf("%s: secret_environment_variables.key must be a literal string", addr)
		}
	}
	// dynamic "secret_environment_variables": key is a literal, or
	// ITERATOR.value.NAME of each element of its for_each list.
	for _, d := range sc.children("dynamic") {
		if len(d.Labels) != 1 || d.Labels[0] != "secret_environment_variables" {
			continue
		}
		fe, _ := d.attr("for_each")
		elems, err := m.listElems(fe, ea)
		if err != nil {
			t.Errorf("%s: dynamic secret_environment_variables: %v", addr, err)
			continue
		}
		for _, c := range d.children("content") {
			key, _ := c.attr("key")
			for _, el := range elems {
				k, ok := "", false
				if r, found := m.deref(key, ea, map[string]tfExpr{"secret_environment_variables": el}); found {
					k, ok = r.literal()
				}
				if !ok {
					t.Errorf("%s: secret_environment_variables key %s must come to a literal string", addr, key.raw())
					continue
				}
				secret(k)
			}
		}
	}
	return f, true
}

// --- Go side ---------------------------------------------------------------

func parseDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	fset := token.NewFileSet()
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
		files = append(files, f)
	}
	return files
}

// registrations finds functions.HTTP("Name", ...) and
// functions.CloudEvent("Name", ...) calls in the root package.
func registrations(t *testing.T) map[string]string {
	t.Helper()
	regs := map[string]string{}
	for _, f := range parseDir(t, root) {
		alias := ""
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == functionsFrameworkImport {
				alias = "functions"
				if imp.Name != nil {
					alias = imp.Name.Name
				}
			}
		}
		if alias == "" {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != alias || (sel.Sel.Name != "HTTP" && sel.Sel.Name != "CloudEvent") {
				return true
			}
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				name, _ := strconv.Unquote(lit.Value)
				regs[name] = sel.Sel.Name
			}
			return true
		})
	}
	return regs
}

type envVar struct {
	name     string
	required bool
}

// configStructs reads the env tags of every struct in shared/config,
// following embedded structs (Common, Store, Calendar).
func configStructs(t *testing.T) map[string][]envVar {
	t.Helper()
	types := map[string]*ast.StructType{}
	for _, f := range parseDir(t, filepath.Join(root, "shared", "config")) {
		ast.Inspect(f, func(n ast.Node) bool {
			if ts, ok := n.(*ast.TypeSpec); ok {
				if st, ok := ts.Type.(*ast.StructType); ok {
					types[ts.Name.Name] = st
				}
			}
			return true
		})
	}
	var flatten func(name string, seen map[string]bool) []envVar
	flatten = func(name string, seen map[string]bool) []envVar {
		st, ok := types[name]
		if !ok || seen[name] {
			return nil
		}
		seen[name] = true
		var vars []envVar
		for _, field := range st.Fields.List {
			if len(field.Names) == 0 { // embedded
				typ := field.Type
				if star, ok := typ.(*ast.StarExpr); ok {
					typ = star.X
				}
				if id, ok := typ.(*ast.Ident); ok {
					vars = append(vars, flatten(id.Name, seen)...)
				}
				continue
			}
			if field.Tag == nil {
				continue
			}
			tag, _ := strconv.Unquote(field.Tag.Value)
			env, ok := reflect.StructTag(tag).Lookup("env")
			if !ok {
				continue
			}
			parts := strings.Split(env, ",")
			v := envVar{name: strings.TrimSpace(parts[0])}
			for _, opt := range parts[1:] {
				if strings.TrimSpace(opt) == "required" {
					v.required = true
				}
			}
			if v.name != "" {
				vars = append(vars, v)
			}
		}
		return vars
	}
	out := map[string][]envVar{}
	for name := range types {
		if vars := flatten(name, map[string]bool{}); len(vars) > 0 {
			out[name] = vars
		}
	}
	return out
}

// logNames reads the Key* (field names) and Event* (event values) constants
// of shared/logging.
func logNames(t *testing.T) (fields, events map[string]bool) {
	t.Helper()
	fields, events = map[string]bool{}, map[string]bool{}
	for _, f := range parseDir(t, filepath.Join(root, "shared", "logging")) {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					v, _ := strconv.Unquote(lit.Value)
					switch {
					case strings.HasPrefix(name.Name, "Key"):
						fields[v] = true
					case strings.HasPrefix(name.Name, "Event"):
						events[v] = true
					}
				}
			}
		}
	}
	if len(fields) == 0 || len(events) == 0 {
		t.Fatal("found no Key*/Event* string constants in shared/logging")
	}
	return fields, events
}

// --- Tests -----------------------------------------------------------------

func TestEntryPointsRegistered(t *testing.T) {
	m := loadModule(t)
	regs := registrations(t)

	// An Eventarc trigger (event_trigger) delivers CloudEvents: its function
	// must be a CloudEvent function. A push subscription's target is an HTTP
	// function that reads Pub/Sub's push JSON itself (the Functions
	// Framework's CloudEvent conversion drops deliveryAttempt and the
	// ordering key). So is everything else.
	pushed := map[string]bool{}
	for _, s := range m.resources("resource", "google_pubsub_subscription") {
		for _, pc := range s.children("push_config") {
			if e, ok := pc.attr("push_endpoint"); ok {
				for _, ref := range functionRefRE.FindAllString(e.raw(), -1) {
					pushed[ref] = true
				}
			}
		}
	}

	for _, f := range m.functions(t) {
		want := "HTTP"
		_, triggered := f.block.child("event_trigger")
		if triggered {
			want = "CloudEvent"
		}
		if triggered && pushed[f.addr] {
			t.Errorf("%s has an event_trigger and a push subscription: it would get each message twice, in two formats", f.addr)
		}
		got, ok := regs[f.entryPoint]
		switch {
		case !ok:
			t.Errorf("%s: entry point %q is not registered in the root package: add functions.%s(%q, ...) to a .go file at the module root (found: %v)",
				f.addr, f.entryPoint, want, f.entryPoint, sortedKeys(regs))
		case got != want:
			t.Errorf("%s: entry point %q is registered with functions.%s, but its trigger needs functions.%s", f.addr, f.entryPoint, got, want)
		}
	}
}

// pendingEnv are environment variables Terraform sets that shared/config
// does not read yet (the env contract of issue 23, built in parallel), with
// what they carry. The test logs them instead of failing; once config reads
// one, the test fails until it is dropped from here.
var pendingEnv = map[string]string{}

// leftToDefault are config variables Terraform deliberately does not set.
var leftToDefault = map[string]string{
	"CALENDAR_ENDPOINT": "Google's endpoint in production; the emulator only in development",
	"OAUTH_TOKEN_URL":   "Google's token endpoint",
	"OAUTH_AUTH_URL":    "Google's consent page",
	"OAUTH_REVOKE_URL":  "Google's revocation endpoint",
}

func TestEnvironmentMatchesConfig(t *testing.T) {
	m := loadModule(t)
	structs := configStructs(t)
	for _, f := range m.functions(t) {
		vars, ok := structs[f.entryPoint]
		if !ok {
			t.Errorf("%s: no config struct %s with env tags in shared/config", f.addr, f.entryPoint)
			continue
		}
		known := map[string]bool{}
		for _, v := range vars {
			known[v.name] = true
			if v.required && f.env[v.name] == "" {
				t.Errorf("%s: required %s (config.%s) is not set in environment_variables or secret_environment_variables", f.addr, v.name, f.entryPoint)
			}
		}
		for _, v := range vars {
			if f.env[v.name] == "" && leftToDefault[v.name] == "" {
				// Not a failure (the code's default applies), but the
				// deployment may want to set it: say so in the test log.
				t.Logf("NOTE: %s leaves %s (config.%s) to the code's default; set it in functions.tf or add it to leftToDefault", f.addr, v.name, f.entryPoint)
			}
		}
		for _, name := range sortedKeys(f.env) {
			switch pending := pendingEnv[name]; {
			case pending != "" && known[name]:
				t.Errorf("%s: %s is now read by config.%s: remove it from pendingEnv", f.addr, name, f.entryPoint)
			case pending != "":
				t.Logf("PENDING: config.%s must read %s (%s)", f.entryPoint, name, pending)
			case !known[name]:
				t.Errorf("%s: sets %s, which config.%s does not read (no env:%q tag)", f.addr, name, f.entryPoint, name)
			}
			if f.env[name] == "plain" && (strings.Contains(name, "KEYS") || strings.Contains(name, "SECRET")) {
				t.Errorf("%s: %s is secret material and must come from secret_environment_variables, not environment_variables", f.addr, name)
			}
		}
	}
}

var (
	jsonPayloadRE = regexp.MustCompile(`jsonPayload\.([A-Za-z_][A-Za-z0-9_]*)`)
	// jsonPayload.event compared with something: only ="value" is understood.
	eventCompareRE = regexp.MustCompile(`jsonPayload\.event\s*([=:!<>~]+)\s*(\\?"([^"\\]*)\\?")?`)
)

func TestLogFiltersMatchCode(t *testing.T) {
	fields, events := logNames(t)
	files, _ := filepath.Glob("*.tf")
	tpls, _ := filepath.Glob("*.tftpl")
	pendingUsed := map[string]bool{}
	for _, name := range append(files, tpls...) {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(src), "\n") {
			pos := fmt.Sprintf("%s:%d", name, i+1)
			for _, match := range jsonPayloadRE.FindAllStringSubmatch(line, -1) {
				field := match[1]
				if _, ok := pendingLogFields[field]; ok {
					pendingUsed[field] = true
					continue
				}
				if fields[field] {
					continue
				}
				t.Errorf("%s: jsonPayload.%s is not a log field the code writes (no Key* constant %q in shared/logging/fields.go)", pos, field, field)
			}
			for _, match := range eventCompareRE.FindAllStringSubmatch(line, -1) {
				if match[1] != "=" || match[2] == "" {
					t.Errorf("%s: compare jsonPayload.event only as jsonPayload.event=\"value\" so this test can check the value (found %q)", pos, match[0])
					continue
				}
				if !events[match[3]] {
					t.Errorf("%s: jsonPayload.event=%q is not an event the code logs (no Event* constant %q in shared/logging/fields.go)", pos, match[3], match[3])
				}
			}
		}
	}
	for _, field := range sortedKeys(pendingUsed) {
		if fields[field] {
			t.Logf("pending log field %q is now in shared/logging/fields.go: remove it from pendingLogFields", field)
		} else {
			t.Logf("PENDING: the code must log jsonPayload.%s (%s)", field, pendingLogFields[field])
		}
	}
}

type requiredIndex struct {
	Collection string `json:"collection"`
	QueryScope string `json:"queryScope,omitempty"`
	Fields     []struct {
		Field string `json:"field"`
		Order string `json:"order,omitempty"`
		Array string `json:"arrayConfig,omitempty"`
	} `json:"fields"`
}

func (ix requiredIndex) String() string {
	var parts []string
	for _, f := range ix.Fields {
		parts = append(parts, f.Field+" "+f.Order+f.Array)
	}
	scope := ix.QueryScope
	if scope == "" {
		scope = "COLLECTION"
	}
	return fmt.Sprintf("%s (%s) [%s]", ix.Collection, scope, strings.Join(parts, ", "))
}

func TestFirestoreIndexes(t *testing.T) {
	path := filepath.Join(root, "shared", "store", "indexes.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s does not exist: no required indexes declared", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	var required []requiredIndex
	if err := json.Unmarshal(data, &required); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	m := loadModule(t)
	have := map[string]string{}
	for _, b := range m.resources("resource", "google_firestore_index") {
		var ix requiredIndex
		ix.Collection, _ = b.literal("collection")
		ix.QueryScope, _ = b.literal("query_scope")
		for _, fb := range b.children("fields") {
			var f struct {
				Field string `json:"field"`
				Order string `json:"order,omitempty"`
				Array string `json:"arrayConfig,omitempty"`
			}
			f.Field, _ = fb.literal("field_path")
			f.Order, _ = fb.literal("order")
			f.Array, _ = fb.literal("array_config")
			ix.Fields = append(ix.Fields, f)
		}
		have[ix.String()] = b.addr()
	}
	for _, ix := range required {
		if _, ok := have[ix.String()]; !ok {
			t.Errorf("no google_firestore_index for %s (required by %s); have: %v", ix, path, sortedKeys(have))
		}
	}
}

// logMetrics reads the log-based metric definitions (local.counter_metrics
// and local.distribution_metrics): metric key -> its label keys.
func (m *module) logMetrics(t *testing.T) map[string]map[string]bool {
	t.Helper()
	metrics := map[string]map[string]bool{}
	for _, local := range []string{"counter_metrics", "distribution_metrics"} {
		e, ok := m.locals[local]
		if !ok {
			t.Fatalf("local.%s is not defined", local)
		}
		obj, ok := e.Expression.(*hclsyntax.ObjectConsExpr)
		if !ok {
			t.Fatalf("%s: local.%s must be an object constructor", e.pos(), local)
		}
		for _, item := range obj.Items {
			key := hcl.ExprAsKeyword(item.KeyExpr)
			if key == "" {
				t.Fatalf("%s: local.%s: metric keys must be bare names", e.pos(), local)
			}
			if metrics[key] != nil {
				t.Errorf("log-based metric %q is defined twice", key)
			}
			labels := map[string]bool{}
			if def, ok := item.ValueExpr.(*hclsyntax.ObjectConsExpr); ok {
				for _, field := range def.Items {
					if hcl.ExprAsKeyword(field.KeyExpr) != "labels" {
						continue
					}
					keys, err := m.objectKeys(tfExpr{field.ValueExpr, e.file})
					if err != nil {
						t.Fatal(err)
					}
					for _, k := range keys {
						labels[k] = true
					}
				}
			}
			metrics[key] = labels
		}
	}
	return metrics
}

var (
	tfMetricRE    = regexp.MustCompile(`local\.metric_type\["([A-Za-z0-9_]+)"\]`)
	tplMetricRE   = regexp.MustCompile(`\$\{metric\.([A-Za-z0-9_]+)\}`)
	metricLabelRE = regexp.MustCompile(`metric\.labels?\.([A-Za-z0-9_]+)`)
	tplVarRE      = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`)
)

func TestMetricReferences(t *testing.T) {
	m := loadModule(t)
	metrics := m.logMetrics(t)

	// checkLabels: a filter or group-by naming metric labels of a log-based
	// metric must name labels that metric has.
	checkLabels := func(where, metric string, text ...string) {
		labels, ok := metrics[metric]
		if !ok {
			t.Errorf("%s names log-based metric %q, which is not in local.counter_metrics or local.distribution_metrics", where, metric)
			return
		}
		for _, s := range text {
			for _, match := range metricLabelRE.FindAllStringSubmatch(s, -1) {
				if !labels[match[1]] {
					t.Errorf("%s uses label %q of log-based metric %q, which has labels %v", where, match[1], metric, sortedKeys(labels))
				}
			}
		}
	}

	// Alerts (one filter a line).
	for _, f := range m.files {
		for i, line := range strings.Split(string(f.src), "\n") {
			for _, match := range tfMetricRE.FindAllStringSubmatch(line, -1) {
				checkLabels(fmt.Sprintf("%s:%d", f.name, i+1), match[1], line)
			}
		}
	}

	// The "above zero" alerts name their metric by key in local.log_metric_alerts.
	if e, ok := m.locals["log_metric_alerts"]; ok {
		obj, ok := e.Expression.(*hclsyntax.ObjectConsExpr)
		if !ok {
			t.Fatalf("%s: local.log_metric_alerts must be an object constructor", e.pos())
		}
		for _, item := range obj.Items {
			where := fmt.Sprintf("local.log_metric_alerts.%s", hcl.ExprAsKeyword(item.KeyExpr))
			metric, ok := tfExpr{item.ValueExpr, e.file}.item("metric")
			name, isLit := metric.literal()
			if !ok || !isLit {
				t.Errorf("%s: metric must be a literal key of local.metric_type", where)
				continue
			}
			checkLabels(where, name)
		}
	}

	// Dashboard: valid JSON, every chart's metric and group-by labels exist,
	// every template variable is passed by templatefile().
	src, err := os.ReadFile("dashboard.json.tftpl")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(src, &dash); err != nil {
		t.Fatalf("dashboard.json.tftpl is not valid JSON: %v", err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			if tsf, ok := x["timeSeriesFilter"].(map[string]any); ok {
				filter, _ := tsf["filter"].(string)
				var texts []string
				texts = append(texts, filter)
				if agg, ok := tsf["aggregation"].(map[string]any); ok {
					if gb, ok := agg["groupByFields"].([]any); ok {
						for _, g := range gb {
							s, _ := g.(string)
							texts = append(texts, s)
						}
					}
				}
				for _, match := range tplMetricRE.FindAllStringSubmatch(filter, -1) {
					checkLabels("dashboard.json.tftpl "+strconv.Quote(filter), match[1], texts...)
				}
			}
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(dash)

	var passed []string
	for _, d := range m.resources("resource", "google_monitoring_dashboard") {
		e, ok := d.attr("dashboard_json")
		call, isCall := e.Expression.(*hclsyntax.FunctionCallExpr)
		if !ok || !isCall || call.Name != "templatefile" || len(call.Args) != 2 {
			t.Fatalf("%s: dashboard_json must be templatefile(\"dashboard.json.tftpl\", {...})", d.addr())
		}
		keys, err := m.objectKeys(tfExpr{call.Args[1], e.file})
		if err != nil {
			t.Fatal(err)
		}
		passed = append(passed, keys...)
	}
	for _, match := range tplVarRE.FindAllStringSubmatch(string(src), -1) {
		if !slices.Contains(passed, match[1]) {
			t.Errorf("dashboard.json.tftpl uses ${%s...}, which templatefile() does not pass (it passes %v)", match[1], passed)
		}
	}
}

func TestTimeoutsAndRuntime(t *testing.T) {
	m := loadModule(t)
	num := func(b tfBlock, path ...string) int {
		t.Helper()
		for _, p := range path[:len(path)-1] {
			c, ok := b.child(p)
			if !ok {
				t.Fatalf("%s: no %s block", b.addr(), p)
			}
			b = c
		}
		s, ok := b.literal(path[len(path)-1])
		if !ok {
			t.Fatalf("%s: %s must be a literal", b.addr(), strings.Join(path, "."))
		}
		n, err := strconv.Atoi(strings.TrimSuffix(s, "s"))
		if err != nil {
			t.Fatalf("%s: %s = %q: %v", b.addr(), strings.Join(path, "."), s, err)
		}
		return n
	}
	fns := m.functions(t)
	// A pushed function must finish before Pub/Sub redelivers its message.
	for _, s := range m.resources("resource", "google_pubsub_subscription") {
		pc, ok := s.child("push_config")
		if !ok {
			continue
		}
		e, _ := pc.attr("push_endpoint")
		for _, fn := range fns {
			if slices.Contains(functionRefRE.FindAllString(e.raw(), -1), fn.addr) {
				if ack := num(s, "ack_deadline_seconds"); fn.timeout >= ack {
					t.Errorf("%s: timeout %ds is not below %s's ack deadline %ds: Pub/Sub would redeliver running syncs", fn.addr, fn.timeout, s.addr(), ack)
				}
			}
		}
	}
	// A scheduled function should not outlive the scheduler's attempt.
	for _, j := range m.resources("resource", "google_cloud_scheduler_job") {
		ht, ok := j.child("http_target")
		if !ok {
			continue
		}
		e, _ := ht.attr("uri")
		for _, fn := range fns {
			if slices.Contains(functionRefRE.FindAllString(e.raw(), -1), fn.addr) {
				if deadline := num(j, "attempt_deadline"); fn.timeout > deadline {
					t.Errorf("%s: timeout %ds exceeds %s's attempt deadline %ds", fn.addr, fn.timeout, j.addr(), deadline)
				}
			}
		}
	}

	// A SyncWorker session stops well before the function's timeout.
	var syncTimeout time.Duration
	for _, fn := range fns {
		if fn.entryPoint == "SyncWorker" {
			syncTimeout = time.Duration(fn.timeout) * time.Second
		}
	}
	for _, v := range m.blocks {
		if v.Type == "variable" && v.Labels[0] == "sync_max_session" {
			def, _ := v.literal("default")
			d, err := time.ParseDuration(def)
			if err != nil || syncTimeout == 0 || d > syncTimeout*3/4 {
				t.Errorf("variable sync_max_session defaults to %q: want a duration under three quarters of the SyncWorker's %s timeout (%v)", def, syncTimeout, err)
			}
		}
	}

	// The runtime default follows go.mod's go directive (go 1.26.x -> go126).
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	match := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindSubmatch(gomod)
	if match == nil {
		t.Fatal("go.mod has no go directive")
	}
	want := "go" + string(match[1]) + string(match[2])
	for _, v := range m.blocks {
		if v.Type == "variable" && v.Labels[0] == "go_runtime" {
			if got, _ := v.literal("default"); got != want {
				t.Errorf("variable go_runtime defaults to %q, but go.mod says %s: want %q", got, match[0], want)
			}
			return
		}
	}
	t.Error("variable go_runtime is not declared")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return slices.Clip(keys)
}

// Every moved block points from an address the configuration no longer has
// to an instance it has, once: otherwise Terraform would destroy what a
// deployment made before holds, or the move would go nowhere. (The plan
// proof, against a state of the earlier layout, is moves_check.py in CI.)
func TestMovedBlocks(t *testing.T) {
	m := loadModule(t)
	have := map[string]bool{}
	for _, b := range m.blocks {
		if b.Type != "resource" || len(b.Labels) != 2 {
			continue
		}
		insts, err := m.instances(b)
		if err != nil {
			have[b.addr()+"[*]"] = true // keys not readable here: any key counts
			continue
		}
		for _, ea := range insts {
			if ea == nil {
				have[b.addr()] = true
			} else {
				have[fmt.Sprintf("%s[%q]", b.addr(), ea.key)] = true
			}
		}
		have[b.addr()+"*"] = true // the resource, any instance
	}
	seen := map[string]string{}
	moves := 0
	for _, b := range m.blocks {
		if b.Type != "moved" {
			continue
		}
		moves++
		from, _ := b.attr("from")
		to, _ := b.attr("to")
		pos := from.pos()
		for _, addr := range []string{from.raw(), to.raw()} {
			if prev, dup := seen[addr]; dup {
				t.Errorf("%s: %s is in two moved blocks (also %s)", pos, addr, prev)
			}
			seen[addr] = pos
		}
		if base, _, _ := strings.Cut(from.raw(), "["); have[base+"*"] && !strings.Contains(from.raw(), "[") {
			t.Errorf("%s: moved from %s, which the configuration still declares", pos, from.raw())
		}
		base, _, _ := strings.Cut(to.raw(), "[")
		if !have[to.raw()] && !have[base+"[*]"] {
			t.Errorf("%s: moved to %s, which the configuration does not declare", pos, to.raw())
		}
	}
	t.Logf("%d moved blocks", moves)
}

// The public functions (Webhook and Connect) have a resource of their own
// (the others take the Webhook's URL), written like
// google_cloudfunctions2_function.calendar: the bodies must stay the same but
// for where their values come from (local.functions.KEY or each.value),
// for_each, the environment (the others add WEBHOOK_URL) and depends_on, so
// a setting added to one is not forgotten in the other.
func TestFunctionBodiesAgree(t *testing.T) {
	m := loadModule(t)
	skip := regexp.MustCompile(`^(#|for_each =|environment_variables =)`)
	normal := func(b tfBlock) []string {
		src := string(b.Range().SliceBytes(b.file.src))
		src = strings.NewReplacer(
			"local.functions."+b.Labels[1]+".", "each.value.",
			"local.fn."+b.Labels[1], "local.fn[each.key]",
			`this["`+b.Labels[1]+`"]`, "this[each.key]",
			`"`+b.Labels[1]+`"`, "NAME",
		).Replace(src)
		if i := strings.Index(src, "depends_on = ["); i >= 0 {
			src = src[:i]
		}
		var out []string
		for _, l := range strings.Split(src, "\n") {
			l = strings.Join(strings.Fields(l), " ")
			if l != "" && !skip.MatchString(l) {
				out = append(out, l)
			}
		}
		return out
	}
	fns := m.resources("resource", "google_cloudfunctions2_function")
	if len(fns) < 2 || len(normal(fns[0])) < 20 {
		t.Fatalf("want the Webhook's resource and another with the same body (%d resources)", len(fns))
	}
	for _, b := range fns[1:] {
		a, z := normal(fns[0]), normal(b)
		for i := 0; i < len(a) || i < len(z); i++ {
			var x, y string
			if i < len(a) {
				x = a[i]
			}
			if i < len(z) {
				y = z[i]
			}
			if x != y {
				t.Errorf("%s and %s differ (line %d of the bodies, comments, for_each, environment_variables and depends_on aside):\n  %q\n  %q", fns[0].addr(), b.addr(), i+1, x, y)
				break
			}
		}
	}
}
