package fleet

import (
	"fmt"
	"strings"
)

var surnames = []string{"王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何", "林", "罗", "高"}

var givenChars = []string{"伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀", "霞", "平", "刚", "桂", "英", "华", "建", "国"}

var englishNames = []string{"John Smith", "Mary Johnson", "David Brown", "Sarah Wilson", "Michael Lee", "Emma Taylor", "James Clark", "Anna Martin"}

var businessNames = map[string][]string{
	"commercial": {"便利店", "超市", "餐厅", "酒店", "药店", "茶楼"},
	"industrial": {"机械厂", "纺织厂", "化工厂", "五金厂", "电子厂"},
	"important":  {"人民医院", "第一中学", "自来水厂", "派出所", "政务中心"},
	"high_risk":  {"化工园区", "燃气站", "医院重症楼", "危化品仓库"},
}

func (g *gen) chineseName() string {
	n := surnames[g.rng.IntN(len(surnames))] + givenChars[g.rng.IntN(len(givenChars))]
	if g.rng.IntN(2) == 0 {
		n += givenChars[g.rng.IntN(len(givenChars))]
	}
	return n
}

// name gives a person for residents and life-support patients, a business
// otherwise.
func (g *gen) name(class string) string {
	if class == "resident" || class == "life_support" {
		return g.chineseName()
	}
	kinds := businessNames[class]
	return surnames[g.rng.IntN(len(surnames))] + "氏" + kinds[g.rng.IntN(len(kinds))]
}

// mess retypes c's phones the way clerks do, opts a few out and makes a
// few English speakers.
func (g *gen) mess(c *Customer) {
	c.Phone = g.messPhone(c.Phone)
	if c.Phone2 != "" && g.rng.Float64() < 0.3 {
		c.Phone2 = g.messPhone(c.Phone2)
	}
	if g.rng.Float64() < 0.02 {
		c.OptOut = true
	}
	if c.Class == "resident" && g.rng.Float64() < 0.02 {
		c.Name = englishNames[g.rng.IntN(len(englishNames))]
		c.Language = "en"
	}
}

// messPhone: about 62% stay clean, the rest get the mistakes of docs/interfaces.md §3.
func (g *gen) messPhone(p string) string {
	x := g.rng.Float64()
	for _, m := range messes {
		if x < m.p {
			return m.fn(g, p)
		}
		x -= m.p
	}
	return p
}

var messes = []struct {
	p  float64
	fn func(g *gen, p string) string
}{
	{0.06, func(g *gen, p string) string { return p[:3] + " " + p[3:7] + " " + p[7:] }},
	{0.05, func(g *gen, p string) string { return p[:3] + "-" + p[3:7] + "-" + p[7:] }},
	{0.02, func(g *gen, p string) string { return fullWidth(p) }},
	{0.03, func(g *gen, p string) string { return []string{"+86", "+86 ", "0086", "86", "+86-"}[g.rng.IntN(5)] + p }},
	{0.02, func(g *gen, p string) string {
		return p + []string{"/", ",", "、", " ", "；"}[g.rng.IntN(5)] + g.mobile()
	}},
	{0.03, func(g *gen, p string) string { return g.landline() }},
	{0.02, func(g *gen, p string) string { return []string{"无", "暂无", "-", "0"}[g.rng.IntN(4)] }},
	{0.06, func(g *gen, p string) string { return "" }},
	{0.01, func(g *gen, p string) string { return p[:3] + "00000000" }},
	{0.02, func(g *gen, p string) string { return p[:10] }},
	{0.01, func(g *gen, p string) string { return " " + p + " " }},
	{0.005, func(g *gen, p string) string { return g.foreign() }},
}

func fullWidth(p string) string {
	var sb strings.Builder
	for _, r := range p {
		if r >= '0' && r <= '9' {
			r = '０' + (r - '0')
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// foreign returns a mobile number of Hong Kong, the UK or the US, valid
// under libphonenumber's rules.
func (g *gen) foreign() string {
	switch g.rng.IntN(3) {
	case 0:
		return fmt.Sprintf("+852 9%03d %04d", g.rng.IntN(1000), g.rng.IntN(10000))
	case 1:
		return fmt.Sprintf("+44 7911 %06d", g.rng.IntN(1_000_000))
	}
	return fmt.Sprintf("+1 650-253-%04d", g.rng.IntN(10000))
}
