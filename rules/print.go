package rules

import (
	"strconv"
	"strings"
)

// Precedence levels, low to high.
const (
	precOr = iota + 1
	precAnd
	precNot
	precCmp
	precAdd
	precMul
	precNeg
	precPrimary
)

func prec(n *node) int {
	switch n.kind {
	case nOr:
		return precOr
	case nAnd:
		return precAnd
	case nNot:
		return precNot
	case nIn:
		return precCmp
	case nBinary:
		switch {
		case isCmp(n.op):
			return precCmp
		case n.op == tPlus || n.op == tMinus:
			return precAdd
		}
		return precMul
	case nNeg:
		return precNeg
	case nNum:
		if n.num < 0 || n.num == 0 && strconv.FormatFloat(n.num, 'g', -1, 64)[0] == '-' {
			return precNeg
		}
	}
	return precPrimary
}

// format renders n in canonical form; elide replaces call arguments with "...".
func format(n *node, elide bool) string {
	var b strings.Builder
	p := printer{b: &b, elide: elide}
	p.print(n, 0)
	return b.String()
}

type printer struct {
	b     *strings.Builder
	elide bool
}

func (p *printer) print(n *node, ctx int) {
	if prec(n) < ctx {
		p.b.WriteByte('(')
		defer p.b.WriteByte(')')
	}
	switch n.kind {
	case nNum:
		p.b.WriteString(strconv.FormatFloat(n.num, 'g', -1, 64))
	case nStr:
		p.b.WriteString(strconv.Quote(n.str))
	case nBool:
		p.b.WriteString(strconv.FormatBool(n.b))
	case nNull:
		p.b.WriteString("null")
	case nList:
		p.b.WriteByte('[')
		p.list(n.args)
		p.b.WriteByte(']')
	case nPath:
		p.b.WriteString(n.name)
		for _, s := range n.path {
			if isIdent(s) {
				p.b.WriteByte('.')
				p.b.WriteString(s)
			} else {
				p.b.WriteByte('[')
				p.b.WriteString(strconv.Quote(s))
				p.b.WriteByte(']')
			}
		}
	case nProfile:
		p.b.WriteString(n.name)
	case nCall:
		p.b.WriteString(n.name)
		p.b.WriteByte('(')
		if p.elide && len(n.args) > 0 {
			p.b.WriteString("...")
		} else {
			p.list(n.args)
		}
		p.b.WriteByte(')')
	case nNot:
		p.b.WriteString("not ")
		p.print(n.args[0], precNot)
	case nNeg:
		p.b.WriteByte('-')
		p.print(n.args[0], precNeg)
	case nAnd, nOr:
		op, sub := " and ", precNot
		if n.kind == nOr {
			op, sub = " or ", precAnd
		}
		for i, a := range n.args {
			if i > 0 {
				p.b.WriteString(op)
			}
			p.print(a, sub)
		}
	case nIn:
		p.print(n.args[0], precAdd)
		p.b.WriteString(" in ")
		p.print(n.args[1], precAdd)
	case nBinary:
		l, r := precAdd, precAdd
		switch {
		case n.op == tPlus || n.op == tMinus:
			r = precMul
		case n.op == tStar || n.op == tSlash:
			l, r = precMul, precNeg
		}
		p.print(n.args[0], l)
		p.b.WriteByte(' ')
		p.b.WriteString(opText[n.op])
		p.b.WriteByte(' ')
		p.print(n.args[1], r)
	}
}

func (p *printer) list(args []*node) {
	for i, a := range args {
		if i > 0 {
			p.b.WriteString(", ")
		}
		p.print(a, 0)
	}
}

func isIdent(s string) bool {
	if s == "" || !isLetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isLetter(s[i]) && !isDigit(s[i]) {
			return false
		}
	}
	return true
}
