/* The HTML report: one self-contained page (no network) that embeds the run's JSON document and
 * draws its charts with a little inline JavaScript into inline SVG:
 *   - a narrative and the key numbers (what happened on launch day, in sentences),
 *   - offered vs achieved rate, latency percentiles over time (one chart per request kind),
 *     stock remaining per SKU, outcomes over time,
 *   - tables: latency per kind, status and error codes, per-SKU results, verification.
 * The JSON sits in a <script type="application/json"> element with every "<" written "\u003c"
 * (the same JSON value) so that no string in it can end the element or open a comment. */
#include "report.h"
#include "flashsale/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char fs__html_head[] =
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>flashsale-load report</title>\n<style>\n"
    "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}\n"
    "main{max-width:1100px;margin:0 auto;padding:24px}\n"
    "h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}\n"
    ".sub{color:#5b6475;margin-bottom:16px}\n"
    ".cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:10px}\n"
    ".card{background:#fff;border-radius:8px;padding:10px 14px;box-shadow:0 1px 2px #0001}\n"
    ".card b{display:block;font-size:20px}.card span{color:#5b6475;font-size:12px}\n"
    ".story{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0001}\n"
    ".chart{background:#fff;border-radius:8px;padding:10px;margin:10px 0;box-shadow:0 1px 2px #0001}\n"
    ".chart h3{margin:0 0 2px;font-size:15px}.chart p{margin:0 0 6px;color:#5b6475;font-size:12px}\n"
    "table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0001;border-radius:8px;overflow:hidden}\n"
    "td,th{padding:5px 10px;border-bottom:1px solid #eceef2;text-align:right}th{background:#eef0f4}\n"
    "td:first-child,th:first-child{text-align:left}\n"
    ".pass{color:#137333;font-weight:600}.fail{color:#b3261e;font-weight:600}\n"
    "svg text{font-size:11px;fill:#5b6475}.legend{font-size:12px}.legend i{display:inline-block;width:12px;height:3px;margin:0 4px 3px 10px;vertical-align:middle}\n"
    "footer{color:#8a93a3;font-size:12px;margin-top:30px}\n"
    "</style></head><body><main id=\"app\"><noscript>This report draws its charts with JavaScript; "
    "the raw data is in the page source.</noscript></main>\n"
    "<script type=\"application/json\" id=\"data\">";

static const char fs__html_tail[] =
    "</script>\n<script>\n"
    "(function(){\n"
    "var D=JSON.parse(document.getElementById('data').textContent);\n"
    "var app=document.getElementById('app');\n"
    "var COL=['#1a73e8','#e8710a','#188038','#d93025','#9334e6','#12b5cb','#f9ab00','#5f6368','#b31412','#0d652d','#7baaf7'];\n"
    "function el(t,a,h){var e=document.createElement(t);for(var k in a||{})e.setAttribute(k,a[k]);if(h!=null)e.innerHTML=h;return e}\n"
    "function esc(s){return String(s).replace(/[&<>\"]/g,function(c){return{'&':'&amp;','<':'&lt;','>':'&gt;','\"':'&quot;'}[c]})}\n"
    "function fmt(v,d){if(v==null||isNaN(v))return '-';if(Math.abs(v)>=1e6)return (v/1e6).toFixed(2)+'M';if(Math.abs(v)>=1e4)return (v/1e3).toFixed(1)+'k';return (+v).toFixed(d==null?0:d)}\n"
    "function add(p,h){var e=el('div',{},h);p.appendChild(e);return e}\n"
    "function nice(max){if(max<=0)return 1;var p=Math.pow(10,Math.floor(Math.log10(max))),n=max/p;return (n<=1?1:n<=2?2:n<=5?5:10)*p}\n"
    "var NS='http://www.w3.org/2000/svg';\n"
    "function sv(t,a){var e=document.createElementNS(NS,t);for(var k in a)e.setAttribute(k,a[k]);return e}\n"
    /* line chart: series = [{name, pts:[[x,y],...], color, dash}] */
    "function chart(title,note,series,o){o=o||{};var box=el('div',{'class':'chart'});box.appendChild(el('h3',{},esc(title)));\n"
    " if(note)box.appendChild(el('p',{},note));\n"
    " var W=1040,H=o.h||240,L=58,R=14,T=10,B=30,xs=[],ys=[];series.forEach(function(s){s.pts.forEach(function(p){xs.push(p[0]);if(p[1]!=null)ys.push(p[1])})});\n"
    " if(!xs.length){box.appendChild(el('p',{},'no data'));app.appendChild(box);return}\n"
    " var x0=o.x0!=null?o.x0:Math.min.apply(null,xs),x1=Math.max.apply(null,xs);if(x1<=x0)x1=x0+1;\n"
    " var ymax=nice(Math.max.apply(null,ys.concat([o.ymin||0]))*1.05);\n"
    " var X=function(x){return L+(x-x0)/(x1-x0)*(W-L-R)},Y=function(y){return T+(1-y/ymax)*(H-T-B)};\n"
    " var s=sv('svg',{viewBox:'0 0 '+W+' '+H,width:'100%'});\n"
    " for(var i=0;i<=4;i++){var yv=ymax*i/4,yy=Y(yv);s.appendChild(sv('line',{x1:L,x2:W-R,y1:yy,y2:yy,stroke:'#e3e6eb'}));var t=sv('text',{x:L-6,y:yy+4,'text-anchor':'end'});t.textContent=fmt(yv,ymax<10?1:0);s.appendChild(t)}\n"
    " var xt=nice((x1-x0)/8);for(var xv=Math.ceil(x0/xt)*xt;xv<=x1+1e-9;xv+=xt){var tx=sv('text',{x:X(xv),y:H-10,'text-anchor':'middle'});tx.textContent=fmt(xv,xt<1?1:0)+'s';s.appendChild(tx)}\n"
    " if(o.ylabel){var yl=sv('text',{x:12,y:T+8});yl.textContent=o.ylabel;s.appendChild(yl)}\n"
    " (o.marks||[]).forEach(function(m){var mx=X(m.x);s.appendChild(sv('line',{x1:mx,x2:mx,y1:T,y2:H-B,stroke:m.color||'#999','stroke-dasharray':'4 3'}));var mt=sv('text',{x:mx+4,y:T+10});mt.textContent=m.label;s.appendChild(mt)});\n"
    " series.forEach(function(se,k){var d='',pen=false;se.pts.forEach(function(p){if(p[1]==null){pen=false;return}d+=(pen?'L':'M')+X(p[0]).toFixed(1)+' '+Y(p[1]).toFixed(1);pen=true});\n"
    "  var path=sv('path',{d:d,fill:'none',stroke:se.color||COL[k%COL.length],'stroke-width':se.w||2});if(se.dash)path.setAttribute('stroke-dasharray',se.dash);\n"
    "  var tt=sv('title',{});tt.textContent=se.name;path.appendChild(tt);s.appendChild(path)});\n"
    " s.appendChild(sv('line',{x1:L,x2:L,y1:T,y2:H-B,stroke:'#9aa0a6'}));s.appendChild(sv('line',{x1:L,x2:W-R,y1:H-B,y2:H-B,stroke:'#9aa0a6'}));\n"
    " var hover=sv('g',{}),hl=sv('line',{y1:T,y2:H-B,stroke:'#555','stroke-width':1,visibility:'hidden'}),ht=sv('text',{y:T+24,visibility:'hidden'});hover.appendChild(hl);hover.appendChild(ht);s.appendChild(hover);\n"
    " s.addEventListener('mousemove',function(ev){var r=s.getBoundingClientRect(),px=(ev.clientX-r.left)/r.width*W;if(px<L||px>W-R){hl.setAttribute('visibility','hidden');ht.setAttribute('visibility','hidden');return}\n"
    "  var xv=x0+(px-L)/(W-L-R)*(x1-x0),parts=[];series.forEach(function(se){var best=null;se.pts.forEach(function(p){if(best==null||Math.abs(p[0]-xv)<Math.abs(best[0]-xv))best=p});if(best&&best[1]!=null)parts.push(se.name+' '+fmt(best[1],best[1]<10?2:0))});\n"
    "  hl.setAttribute('x1',px);hl.setAttribute('x2',px);hl.setAttribute('visibility','visible');ht.textContent=fmt(xv,1)+'s: '+parts.join(', ');ht.setAttribute('x',Math.min(px+6,W-380));ht.setAttribute('visibility','visible')});\n"
    " box.appendChild(s);var lg=el('div',{'class':'legend'});series.forEach(function(se,k){lg.innerHTML+='<i style=\"background:'+(se.color||COL[k%COL.length])+'\"></i>'+esc(se.name)});box.appendChild(lg);app.appendChild(box)}\n"
    "function table(head,rows){var h='<table><tr>'+head.map(function(x){return '<th>'+esc(x)+'</th>'}).join('')+'</tr>';rows.forEach(function(r){h+='<tr>'+r.map(function(x){return '<td>'+x+'</td>'}).join('')+'</tr>'});return h+'</table>'}\n"
    "var C=D.campaign,tl=D.timeline||[],kinds=Object.keys(D.kinds||{}),main=kinds.indexOf('reserve')>=0?'reserve':kinds[0];\n"
    "app.appendChild(el('h1',{},C?'Launch rehearsal: '+esc(C.name):'Load test: '+esc(D.url||'')));\n"
    "app.appendChild(el('div',{'class':'sub'},C?('launch <b>'+esc(C.launch)+'</b> on '+esc(C.server)+' &middot; '+fmt(C.shoppers)+' shoppers &middot; '+C.connections+' connections &middot; generated by flashsale-load')\n"
    " :(esc(D.loop||'')+' loop &middot; '+D.connections+' connections &middot; '+D.threads+' threads')));\n"
    "var cards=el('div',{'class':'cards'});function card(v,l){cards.innerHTML+='<div class=\"card\"><b>'+v+'</b><span>'+esc(l)+'</span></div>'}\n"
    "card(fmt(D.requests),'requests answered');card(fmt(D.requests_per_sec,1)+'/s','average throughput');card(fmt(D.duration_s,1)+' s','duration');\n"
    "if(main&&D.kinds[main]){var lm=D.kinds[main].latency_ms;card(fmt(lm.p50,2)+' ms',main+' p50');card(fmt(lm.p99,2)+' ms',main+' p99');card(fmt(lm.max,1)+' ms',main+' max')}\n"
    "if(C){var sold=0,tot=0;(D.skus||[]).forEach(function(k){sold+=k.sold;tot+=k.total});card(fmt(sold)+' / '+fmt(tot),'units sold');\n"
    " card(D.time_to_sell_out_s!=null?fmt(D.time_to_sell_out_s,1)+' s':'not sold out','time to sell out');\n"
    " if(D.verification)card('<span class=\"'+(D.verification.passed?'pass':'fail')+'\">'+D.verification.result+'</span>','verification')}\n"
    "app.appendChild(cards);\n"
    /* the narrative */
    "if(C){var o=D.outcomes||{},peak=0,peakAt=0;tl.forEach(function(p){if(p.offered>peak){peak=p.offered;peakAt=p.t}});\n"
    " var st='<p>For '+fmt(C.duration_s,0)+' s, '+fmt((D.arrivals||{}).arrived)+' shopper visits arrived (peak offered rate '+fmt(peak)+'/s around '+fmt(peakAt,0)+' s) asking for '+(D.skus||[]).length+' SKUs with '+fmt(tot)+' units in total.';\n"
    " st+=' The server answered '+fmt(D.requests)+' requests ('+fmt(D.requests_per_sec,0)+'/s on average; '+fmt(D.failed)+' got no answer).';\n"
    " if(D.arrivals&&D.arrivals.schedule_kept===false)st+=' <span class=\"fail\">The server could not keep up with the schedule</span>: '+fmt(D.arrivals.late_100ms)+' shoppers got through more than 100 ms late (worst '+fmt(D.arrivals.max_lag_ms/1000,1)+' s), and their wait counts in the latencies below.';\n"
    " st+=' '+fmt(o.held||0)+' reservations were granted; '+fmt(o.confirmed||0)+' became orders, '+fmt(o.cancelled||0)+' were cancelled and '+fmt(o.abandoned||0)+' abandoned (left to expire after '+C.hold_seconds+' s).';\n"
    " st+=' '+fmt(o.sold_out||0)+' attempts were turned away as sold out and '+fmt(o.limit_exceeded||0)+' for the per-shopper limit.';\n"
    " var so=(D.skus||[]).filter(function(k){return k.first_sold_out_s!=null}).map(function(k){return esc(k.sku)+' after '+fmt(k.first_sold_out_s,1)+' s'});\n"
    " if(so.length)st+=' First \"sold out\" answers: '+so.join(', ')+'.';\n"
    " if(D.kinds.reserve)st+=' Reservation latency: p50 '+fmt(D.kinds.reserve.latency_ms.p50,2)+' ms, p99 '+fmt(D.kinds.reserve.latency_ms.p99,2)+' ms, worst '+fmt(D.kinds.reserve.latency_ms.max,1)+' ms (measured from when each shopper meant to click).';\n"
    " if(D.verification)st+=' Verification <span class=\"'+(D.verification.passed?'pass':'fail')+'\">'+(D.verification.passed?'PASSED: nothing was oversold and every order is in the order streams exactly once':'FAILED: see the table below')+'</span>.';\n"
    " app.appendChild(el('h2',{},'What happened'));app.appendChild(el('div',{'class':'story'},st+'</p>'))}\n"
    "else if(D.loop==='open'){app.appendChild(el('div',{'class':'story'},'<p>Target '+fmt(D.target_rate)+' requests/s: '+(D.rate_held?'held':'<span class=\"fail\">not held</span>')+' ('+fmt(D.missed)+' of '+fmt(D.intended)+' arrivals never sent).</p>'))}\n"
    /* charts */
    "app.appendChild(el('h2',{},'Over time'));\n"
    "var mk=[];if(C&&D.opened_at_s!=null&&D.opened_at_s>0.05)mk.push({x:D.opened_at_s,label:'opened'});\n"
    "if(C)(D.skus||[]).forEach(function(k){if(k.first_sold_out_s!=null)mk.push({x:k.first_sold_out_s,label:k.sku+' sold out',color:'#d93025'})});\n"
    "function lat(p,k,q){return p.latency_ms&&p.latency_ms[k]?p.latency_ms[k][q]:null}\n"
    "var rs=[];if(tl.some(function(p){return p.offered>0}))rs.push({name:'offered (arrivals/s)',pts:tl.map(function(p){return [p.t,p.offered]}),color:'#9aa0a6',dash:'6 4'});\n"
    "if(main)rs.push({name:main+' answered/s',pts:tl.map(function(p){return [p.t,lat(p,main,'n')||0]}),color:'#1a73e8'});\n"
    "rs.push({name:'all answers/s',pts:tl.map(function(p){return [p.t,p.achieved]}),color:'#188038',w:1});\n"
    "rs.push({name:'no answer/s',pts:tl.map(function(p){return [p.t,p.failed]}),color:'#d93025',w:1});\n"
    "chart('Offered vs achieved rate','Offered: what the schedule asked for each second. Achieved: answers received in that second (retries included).',rs,{x0:0,ylabel:'per second',marks:mk});\n"
    "kinds.forEach(function(k){chart('Latency of '+k+' requests (ms)','Per second; measured from the intended send time, so waiting for a connection counts.',\n"
    " ['p50','p90','p99','max'].map(function(q,i){return {name:q,pts:tl.map(function(p){return [p.t,lat(p,k,q)]}),color:['#188038','#1a73e8','#e8710a','#d93025'][i],w:q=='max'?1:2}}),{x0:0,ylabel:'ms',marks:mk})});\n"
    "if(C&&D.stock_timeline&&D.stock_timeline.length){var ss=[];(D.skus||[]).forEach(function(k,i){\n"
    " ss.push({name:k.sku+' available',pts:[[0,k.stock]].concat(D.stock_timeline.map(function(p){var v=p.skus[k.sku];return [p.t,v?v[0]:null]})),color:COL[i%COL.length]});\n"
    " ss.push({name:k.sku+' sold',pts:[[0,0]].concat(D.stock_timeline.map(function(p){var v=p.skus[k.sku];return [p.t,v?v[2]:null]})),color:COL[i%COL.length],dash:'5 4',w:1})});\n"
    " chart('Stock remaining per SKU','Solid: available units (polled once a second through the operator API); dashed: sold.',ss,{x0:0,ylabel:'units',marks:mk})}\n"
    "var on={};tl.forEach(function(p){for(var k in p.outcomes||{})on[k]=1});var onames=Object.keys(on);\n"
    "if(onames.length)chart('Outcomes per second','What shoppers got, by kind: held (reservation granted), confirmed, cancelled, abandoned, sold_out, limit_exceeded, retried, ...',\n"
    " onames.map(function(k,i){return {name:k,pts:tl.map(function(p){return [p.t,(p.outcomes||{})[k]||0]}),color:COL[i%COL.length]}}),{x0:0,ylabel:'per second',marks:mk});\n"
    /* tables */
    "app.appendChild(el('h2',{},'Latency by request kind (ms)'));\n"
    "add(app,table(['kind','answered','no answer','p50','p90','p99','p99.9','max','mean'],kinds.map(function(k){var x=D.kinds[k],l=x.latency_ms;return [k,fmt(x.requests),fmt(x.failed),fmt(l.p50,3),fmt(l.p90,3),fmt(l.p99,3),fmt(l.p999,3),fmt(l.max,3),fmt(l.mean,3)]})));\n"
    "app.appendChild(el('h2',{},'Answers by status and error code'));\n"
    "add(app,table(['kind','status codes','error codes'],kinds.map(function(k){var x=D.kinds[k];return [k,Object.keys(x.status).map(function(s){return s+': '+fmt(x.status[s])}).join(', '),\n"
    " Object.keys(x.errors).map(function(s){return esc(s)+': '+fmt(x.errors[s])}).join(', ')||'-']})));\n"
    "if(C){app.appendChild(el('h2',{},'Per SKU'));\n"
    " add(app,table(['sku','stock','sold','held','available','orders in stream','limit','first sold_out','available 0 at','all sold at'],(D.skus||[]).map(function(k){\n"
    "  return [esc(k.sku),fmt(k.stock),fmt(k.sold),fmt(k.held),fmt(k.available),k.stream_orders!=null?fmt(k.stream_orders):'-',k.per_user_limit,\n"
    "   k.first_sold_out_s!=null?fmt(k.first_sold_out_s,2)+' s':'-',k.available_zero_s!=null?fmt(k.available_zero_s,0)+' s':'-',k.all_sold_s!=null?fmt(k.all_sold_s,0)+' s':'-']})));\n"
    " var ph=(C.profile||[]).map(function(p){return [esc(p.kind),fmt(p.start_s,1)+' s',fmt(p.from)+'/s',fmt(p.to)+'/s',fmt(p.duration_s,1)+' s']});\n"
    " app.appendChild(el('h2',{},'Rate profile'));add(app,table(['phase','starts','from','to','lasts'],ph));\n"
    " app.appendChild(el('h2',{},'Behaviour'));add(app,'<div class=\"story\"><p>After a granted reservation a shopper thinks for '+fmt(C.think_min_s,2)+' to '+fmt(C.think_max_s,2)+' s, then confirms with probability '+C.confirm+', cancels with probability '+C.cancel+', and otherwise abandons the hold. 429/503 answers and lost connections are retried with exponential backoff.</p></div>')}\n"
    "if(D.verification){app.appendChild(el('h2',{},'Verification'));\n"
    " add(app,table(['invariant','result','detail'],D.verification.invariants.map(function(v){return [esc(v.name),'<span class=\"'+(v.passed?'pass':'fail')+'\">'+v.result+'</span>',esc(v.detail)]})))}\n"
    "app.appendChild(el('footer',{},'flashsale-load report. The raw data of this page is the JSON document embedded in it (see docs/loadtest.md for the fields).'));\n"
    "})();\n</script>\n</body></html>\n";

typedef struct {
    FILE *f;
} fs__html_out_t;

/* jansson dump callback: copies the JSON text; '<' only occurs inside strings, where "\u003c"
 * means the same. */
static int fs__dump_cb(const char *buf, size_t size, void *data)
{
    fs__html_out_t *o = data;
    for (size_t i = 0; i < size; i++) {
        if (buf[i] == '<')
            fputs("\\u003c", o->f);
        else
            fputc(buf[i], o->f);
    }
    return ferror(o->f) ? -1 : 0;
}

int fs_report_write_html(const json_t *doc, const char *path, char *err, size_t errcap)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(err, errcap, "cannot write %s: %s", path, strerror(errno));
        return FS_EIO;
    }
    fs__html_out_t o = {.f = f};
    fputs(fs__html_head, f);
    int rc = json_dump_callback(doc, fs__dump_cb, &o, JSON_COMPACT | JSON_REAL_PRECISION(7));
    fputs(fs__html_tail, f);
    if (rc != 0 || ferror(f)) {
        fclose(f);
        snprintf(err, errcap, "cannot write %s", path);
        return FS_EIO;
    }
    if (fclose(f) != 0) {
        snprintf(err, errcap, "cannot write %s: %s", path, strerror(errno));
        return FS_EIO;
    }
    return FS_OK;
}
