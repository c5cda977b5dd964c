package rules

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"unicode/utf8"
)

type pos struct{ line, col int }

func errAt(p pos, format string, args ...any) *Error {
	return &Error{Line: p.line, Column: p.col, Reason: fmt.Sprintf(format, args...)}
}

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tNumber
	tString
	tLParen
	tRParen
	tLBrack
	tRBrack
	tComma
	tDot
	tPlus
	tMinus
	tStar
	tSlash
	tEq
	tNe
	tLt
	tLe
	tGt
	tGe
)

var tokText = [...]string{tEOF: "end of rule", tIdent: "name", tNumber: "number", tString: "string",
	tLParen: `"("`, tRParen: `")"`, tLBrack: `"["`, tRBrack: `"]"`, tComma: `","`, tDot: `"."`,
	tPlus: `"+"`, tMinus: `"-"`, tStar: `"*"`, tSlash: `"/"`, tEq: `"=="`, tNe: `"!="`,
	tLt: `"<"`, tLe: `"<="`, tGt: `">"`, tGe: `">="`}

var opText = [...]string{tPlus: "+", tMinus: "-", tStar: "*", tSlash: "/", tEq: "==", tNe: "!=",
	tLt: "<", tLe: "<=", tGt: ">", tGe: ">="}

type token struct {
	kind tokKind
	pos  pos
	text string  // identifier, or the source text of a number or string
	str  string  // value of a string
	num  float64 // value of a number
}

func (t token) describe() string {
	switch t.kind {
	case tIdent:
		return strconv.Quote(t.text)
	case tNumber, tString:
		return t.text
	}
	return tokText[t.kind]
}

// lex turns src into tokens.
func lex(src string) ([]token, error) {
	var toks []token
	line, col := 1, 1
	i := 0
	adv := func(n int) { // advance n bytes on one line
		col += utf8.RuneCountInString(src[i : i+n])
		i += n
	}
	for i < len(src) {
		c := src[i]
		p := pos{line, col}
		switch {
		case c == '\n':
			line++
			col = 1
			i++
			continue
		case c == ' ' || c == '\t' || c == '\r':
			adv(1)
			continue
		case isLetter(c):
			j := i + 1
			for j < len(src) && (isLetter(src[j]) || isDigit(src[j])) {
				j++
			}
			toks = append(toks, token{kind: tIdent, pos: p, text: src[i:j]})
			adv(j - i)
			continue
		case isDigit(c) && len(toks) > 0 && toks[len(toks)-1].kind == tDot:
			j := i
			for j < len(src) && (isLetter(src[j]) || isDigit(src[j])) {
				j++
			}
			return nil, errAt(p, "a name cannot start with a digit (write [%q])", src[i:j])
		case isDigit(c):
			j := i
			for j < len(src) && isDigit(src[j]) {
				j++
			}
			if j+1 < len(src) && src[j] == '.' && isDigit(src[j+1]) {
				j++
				for j < len(src) && isDigit(src[j]) {
					j++
				}
			}
			if j < len(src) && (src[j] == 'e' || src[j] == 'E') {
				k := j + 1
				if k < len(src) && (src[k] == '+' || src[k] == '-') {
					k++
				}
				if k < len(src) && isDigit(src[k]) {
					for k < len(src) && isDigit(src[k]) {
						k++
					}
					j = k
				}
			}
			if j < len(src) && (isLetter(src[j]) || src[j] == '.') {
				k := j
				for k < len(src) && (isLetter(src[k]) || isDigit(src[k]) || src[k] == '.') {
					k++
				}
				return nil, errAt(p, "invalid number %q (windows are strings, like \"90d\")", src[i:k])
			}
			v, err := strconv.ParseFloat(src[i:j], 64)
			if err != nil || math.IsInf(v, 0) {
				return nil, errAt(p, "number %s out of range", src[i:j])
			}
			toks = append(toks, token{kind: tNumber, pos: p, text: src[i:j], num: v})
			adv(j - i)
			continue
		case c == '"':
			j := i + 1
			for {
				if j >= len(src) || src[j] == '\n' {
					return nil, errAt(p, "unterminated string")
				}
				if src[j] == '\\' && j+1 < len(src) {
					j += 2
					continue
				}
				if src[j] == '"' {
					break
				}
				j++
			}
			text := src[i : j+1]
			s, err := strconv.Unquote(text)
			if err != nil {
				return nil, errAt(p, "invalid escape in string %s", text)
			}
			toks = append(toks, token{kind: tString, pos: p, text: text, str: s})
			adv(j + 1 - i)
			continue
		}
		two := ""
		if i+1 < len(src) {
			two = src[i : i+2]
		}
		var k tokKind
		n := 1
		switch {
		case two == "==":
			k, n = tEq, 2
		case two == "!=":
			k, n = tNe, 2
		case two == "<=":
			k, n = tLe, 2
		case two == ">=":
			k, n = tGe, 2
		case two == "&&":
			return nil, errAt(p, `unexpected "&&" (use and)`)
		case two == "||":
			return nil, errAt(p, `unexpected "||" (use or)`)
		case c == '<':
			k = tLt
		case c == '>':
			k = tGt
		case c == '(':
			k = tLParen
		case c == ')':
			k = tRParen
		case c == '[':
			k = tLBrack
		case c == ']':
			k = tRBrack
		case c == ',':
			k = tComma
		case c == '.':
			k = tDot
		case c == '+':
			k = tPlus
		case c == '-':
			k = tMinus
		case c == '*':
			k = tStar
		case c == '/':
			k = tSlash
		case c == '=':
			return nil, errAt(p, `unexpected "=" (use == to compare)`)
		case c == '!':
			return nil, errAt(p, `unexpected "!" (use not, or != to compare)`)
		case c == '\'':
			return nil, errAt(p, `unexpected "'" (strings use double quotes)`)
		default:
			r, _ := utf8.DecodeRuneInString(src[i:])
			return nil, errAt(p, "unexpected character %q", r)
		}
		toks = append(toks, token{kind: k, pos: p})
		adv(n)
	}
	toks = append(toks, token{kind: tEOF, pos: pos{line, col}})
	return toks, nil
}

func isLetter(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

// Syntax tree.

type nodeKind uint8

const (
	nNum     nodeKind = iota
	nStr              // string literal
	nBool             // true, false
	nNull             // null
	nList             // [args...]
	nPath             // name ("traits" or "properties") . path...
	nProfile          // bare first_seen / last_seen: name
	nCall             // name(args...)
	nNot              // not args[0]
	nNeg              // - args[0]
	nAnd              // args[0] and args[1] and ...
	nOr               // args[0] or args[1] or ...
	nBinary           // args[0] op args[1]: arithmetic, comparison
	nIn               // args[0] in args[1]
)

type node struct {
	kind  nodeKind
	pos   pos // first token
	opPos pos // operator (binary, in) or name (call)
	op    tokKind
	num   float64
	str   string
	b     bool
	name  string
	path  []string
	args  []*node

	// Filled in by the checker.
	typ    typ
	fn     fnKind
	agg    Agg
	funnel Funnel
	re     *regexp.Regexp
	win    int64
	time   int64   // date()
	lits   []value // nList of literals: the values, computed once
}

type parser struct {
	toks  []token
	i     int
	depth int
}

func newParser(src string) (*parser, error) {
	if !utf8.ValidString(src) {
		return nil, &Error{Line: 1, Column: 1, Reason: "rule is not valid UTF-8"}
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	return &parser{toks: toks}, nil
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}
func (p *parser) isKeyword(kw string) bool {
	t := p.peek()
	return t.kind == tIdent && t.text == kw
}

func (p *parser) expect(k tokKind, what string) (token, error) {
	t := p.next()
	if t.kind != k {
		return t, errAt(t.pos, "expected %s, found %s", what, t.describe())
	}
	return t, nil
}

func (p *parser) enter(at pos) error {
	p.depth++
	if p.depth > MaxDepth {
		return errAt(at, "nesting deeper than %d", MaxDepth)
	}
	return nil
}

func (p *parser) parseRule() (*node, error) {
	if p.peek().kind == tEOF {
		return nil, errAt(p.peek().pos, "empty rule")
	}
	n, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, errAt(t.pos, "unexpected %s after the end of the expression", t.describe())
	}
	return n, nil
}

func (p *parser) parseOr() (*node, error) {
	return p.parseLogical("or", nOr, p.parseAnd)
}

func (p *parser) parseAnd() (*node, error) {
	return p.parseLogical("and", nAnd, p.parseNot)
}

func (p *parser) parseLogical(kw string, kind nodeKind, sub func() (*node, error)) (*node, error) {
	x, err := sub()
	if err != nil {
		return nil, err
	}
	if !p.isKeyword(kw) {
		return x, nil
	}
	n := &node{kind: kind, pos: x.pos}
	n.args = appendFlat(n.args, x, kind)
	for p.isKeyword(kw) {
		p.next()
		y, err := sub()
		if err != nil {
			return nil, err
		}
		n.args = appendFlat(n.args, y, kind)
	}
	return n, nil
}

// appendFlat flattens (a and b) and c into one and: the canonical form.
func appendFlat(args []*node, x *node, kind nodeKind) []*node {
	if x.kind == kind {
		return append(args, x.args...)
	}
	return append(args, x)
}

func (p *parser) parseNot() (*node, error) {
	if p.isKeyword("not") {
		t := p.next()
		if err := p.enter(t.pos); err != nil {
			return nil, err
		}
		x, err := p.parseNot()
		p.depth--
		if err != nil {
			return nil, err
		}
		return &node{kind: nNot, pos: t.pos, opPos: t.pos, args: []*node{x}}, nil
	}
	return p.parseCmp()
}

func isCmp(k tokKind) bool { return k >= tEq && k <= tGe }

func (p *parser) parseCmp() (*node, error) {
	x, err := p.parseAdd()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	var n *node
	switch {
	case isCmp(t.kind):
		p.next()
		y, err := p.parseAdd()
		if err != nil {
			return nil, err
		}
		n = &node{kind: nBinary, pos: x.pos, opPos: t.pos, op: t.kind, args: []*node{x, y}}
	case t.kind == tIdent && t.text == "in":
		p.next()
		y, err := p.parseAdd()
		if err != nil {
			return nil, err
		}
		n = &node{kind: nIn, pos: x.pos, opPos: t.pos, args: []*node{x, y}}
	default:
		return x, nil
	}
	if t := p.peek(); isCmp(t.kind) || t.kind == tIdent && t.text == "in" {
		return nil, errAt(t.pos, "comparisons cannot be chained (use and)")
	}
	return n, nil
}

func (p *parser) parseAdd() (*node, error) {
	x, err := p.parseMul()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t.kind == tPlus || t.kind == tMinus; t = p.peek() {
		p.next()
		y, err := p.parseMul()
		if err != nil {
			return nil, err
		}
		x = &node{kind: nBinary, pos: x.pos, opPos: t.pos, op: t.kind, args: []*node{x, y}}
	}
	return x, nil
}

func (p *parser) parseMul() (*node, error) {
	x, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t.kind == tStar || t.kind == tSlash; t = p.peek() {
		p.next()
		y, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		x = &node{kind: nBinary, pos: x.pos, opPos: t.pos, op: t.kind, args: []*node{x, y}}
	}
	return x, nil
}

func (p *parser) parseUnary() (*node, error) {
	if t := p.peek(); t.kind == tMinus {
		p.next()
		if err := p.enter(t.pos); err != nil {
			return nil, err
		}
		x, err := p.parseUnary()
		p.depth--
		if err != nil {
			return nil, err
		}
		if x.kind == nNum { // fold: -1 is a literal
			x.num = -x.num
			x.pos = t.pos
			return x, nil
		}
		return &node{kind: nNeg, pos: t.pos, opPos: t.pos, args: []*node{x}}, nil
	}
	return p.parsePrimary()
}

var keywords = map[string]bool{"and": true, "or": true, "not": true, "in": true, "true": true, "false": true, "null": true}

func (p *parser) parsePrimary() (*node, error) {
	t := p.next()
	switch t.kind {
	case tNumber:
		return &node{kind: nNum, pos: t.pos, num: t.num}, nil
	case tString:
		return &node{kind: nStr, pos: t.pos, str: t.str}, nil
	case tLParen:
		if err := p.enter(t.pos); err != nil {
			return nil, err
		}
		x, err := p.parseOr()
		p.depth--
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tRParen, `")"`); err != nil {
			return nil, err
		}
		return x, nil
	case tLBrack:
		if err := p.enter(t.pos); err != nil {
			return nil, err
		}
		args, err := p.parseArgs(tRBrack, `"]"`)
		p.depth--
		if err != nil {
			return nil, err
		}
		if len(args) > MaxList {
			return nil, errAt(t.pos, "list has %d elements, more than %d", len(args), MaxList)
		}
		return &node{kind: nList, pos: t.pos, args: args}, nil
	case tIdent:
		switch t.text {
		case "true", "false":
			return &node{kind: nBool, pos: t.pos, b: t.text == "true"}, nil
		case "null":
			return &node{kind: nNull, pos: t.pos}, nil
		case "traits", "properties", "predictions":
			return p.parsePath(t)
		case "affinity":
			if p.peek().kind == tDot || p.peek().kind == tLBrack {
				return p.parsePath(t)
			}
		}
		if keywords[t.text] {
			return nil, errAt(t.pos, "unexpected %q", t.text)
		}
		if p.peek().kind != tLParen {
			if t.text == "first_seen" || t.text == "last_seen" {
				return &node{kind: nProfile, pos: t.pos, opPos: t.pos, name: t.text}, nil
			}
			if _, ok := functions[t.text]; ok {
				return nil, errAt(p.peek().pos, "expected \"(\" after %s", t.text)
			}
			return nil, errAt(t.pos, "unknown name %q (traits are written traits.%s)", t.text, t.text)
		}
		lp := p.next()
		if err := p.enter(lp.pos); err != nil {
			return nil, err
		}
		args, err := p.parseArgs(tRParen, `")"`)
		p.depth--
		if err != nil {
			return nil, err
		}
		return &node{kind: nCall, pos: t.pos, opPos: t.pos, name: t.text, args: args}, nil
	}
	return nil, errAt(t.pos, "expected a value, found %s", t.describe())
}

func (p *parser) parseArgs(end tokKind, endText string) ([]*node, error) {
	var args []*node
	if p.peek().kind == end {
		p.next()
		return nil, nil
	}
	for {
		x, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		args = append(args, x)
		t := p.next()
		if t.kind == end {
			return args, nil
		}
		if t.kind != tComma {
			return nil, errAt(t.pos, "expected \",\" or %s, found %s", endText, t.describe())
		}
	}
}

func (p *parser) parsePath(root token) (*node, error) {
	n := &node{kind: nPath, pos: root.pos, name: root.text}
	for {
		switch t := p.peek(); t.kind {
		case tDot:
			p.next()
			id, err := p.expect(tIdent, "a name after \".\"")
			if err != nil {
				return nil, err
			}
			n.path = append(n.path, id.text)
			continue
		case tLBrack:
			p.next()
			s, err := p.expect(tString, "a quoted name after \"[\"")
			if err != nil {
				return nil, err
			}
			if _, err := p.expect(tRBrack, `"]"`); err != nil {
				return nil, err
			}
			n.path = append(n.path, s.str)
			continue
		}
		break
	}
	if len(n.path) == 0 {
		return nil, errAt(p.peek().pos, "expected \".\" and a name after %s", root.text)
	}
	return n, nil
}
