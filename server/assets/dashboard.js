// The Ferrum analytics dashboard: fetches the reports from $analytics.json (passing this
// page's query string, e.g. ?asOf=2026-01-31&top=5) and draws each as an SVG chart. No
// library and no external resource. A token given in the fragment (#access_token=...) is
// sent as a Bearer token; the fragment never leaves the browser.
//
// Every chart is a <figure data-chart="<id>"> whose bars are <g class="bar" data-key=...
// data-value=...>, so that tools (and the tests) can read what was drawn.
'use strict';

(function () {
  const SVG = 'http://www.w3.org/2000/svg';
  const COLOURS = ['#2f6fde', '#1b998b', '#e4572e', '#8e44ad', '#f3a712', '#29335c'];
  let charts = 0;

  // One colour per chart, taken in turn.
  function nextColour() {
    return COLOURS[charts++ % COLOURS.length];
  }

  function element(name, attributes, text) {
    const node = document.createElement(name);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(name, attributes, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // A key the resources did not record is null in the reports.
  function label(key) {
    return key === null || key === undefined ? 'not recorded' : String(key);
  }

  function money(amount, currency) {
    const text = Number(amount).toLocaleString('en', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    return currency ? text + ' ' + currency : text;
  }

  function figure(id, title) {
    const node = element('figure', { 'data-chart': id });
    node.append(element('figcaption', {}, title));
    return node;
  }

  function empty(node) {
    node.append(element('p', { class: 'empty' }, 'No data yet'));
    return node;
  }

  // Horizontal bars: rows of {key, value, text}; value decides the length.
  function bars(id, title, rows) {
    const node = figure(id, title);
    if (rows.length === 0) return empty(node);
    const width = 480, labelWidth = 170, room = 220, rowHeight = 24;
    const height = rows.length * rowHeight + 4;
    const max = Math.max(...rows.map((row) => Number(row.value)), 0) || 1;
    const colour = nextColour();
    const chart = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title });
    rows.forEach((row, index) => {
      const y = 2 + index * rowHeight;
      const value = Number(row.value);
      const length = value > 0 ? Math.max(2, Math.round((value / max) * room)) : 0;
      const bar = svg('g', { class: 'bar', 'data-key': row.key, 'data-value': String(row.value) });
      bar.append(svg('title', {}, `${row.key}: ${row.text}`));
      bar.append(svg('text', { class: 'label', x: labelWidth - 8, y: y + 16, 'text-anchor': 'end' }, row.key));
      bar.append(svg('rect', { x: labelWidth, y: y + 4, width: length, height: rowHeight - 8, fill: colour }));
      bar.append(svg('text', { class: 'value', x: labelWidth + length + 6, y: y + 16 }, row.text));
      chart.append(bar);
    });
    node.append(chart);
    return node;
  }

  // Vertical columns over time: rows of {key, value, text}, oldest first.
  function columns(id, title, rows) {
    const node = figure(id, title);
    if (rows.length === 0) return empty(node);
    const height = 220, top = 20, bottom = 70, left = 56, right = 8;
    const step = Math.max(14, Math.min(48, Math.floor(420 / rows.length)));
    const width = left + rows.length * step + right;
    const colour = nextColour();
    const room = height - top - bottom;
    const max = Math.max(...rows.map((row) => Number(row.value)), 0) || 1;
    const chart = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title });
    chart.append(svg('line', { class: 'axis', x1: left, y1: height - bottom, x2: width - right, y2: height - bottom }));
    rows.forEach((row, index) => {
      const x = left + index * step;
      const value = Number(row.value);
      const length = value > 0 ? Math.max(2, Math.round((value / max) * room)) : 0;
      const base = height - bottom;
      const bar = svg('g', { class: 'bar', 'data-key': row.key, 'data-value': String(row.value) });
      bar.append(svg('title', {}, `${row.key}: ${row.text}`));
      bar.append(svg('rect', { x: x + 2, y: base - length, width: step - 4, height: length, fill: colour }));
      bar.append(svg('text', { class: 'value', x: x + step / 2, y: base - length - 4, 'text-anchor': 'middle' }, row.text));
      const labelY = base + 12;
      bar.append(svg('text', {
        class: 'label', x: x + step / 2, y: labelY, 'text-anchor': 'end',
        transform: `rotate(-45 ${x + step / 2} ${labelY})`,
      }, row.key));
      chart.append(bar);
    });
    node.append(chart);
    return node;
  }

  function counted(list) {
    return list.map((item) => ({ key: label(item.key), value: item.count, text: String(item.count) }));
  }

  function tile(name, number) {
    const node = element('div', { class: 'tile', 'data-total': name });
    node.append(element('span', { class: 'number' }, String(number)));
    node.append(element('span', { class: 'name' }, name));
    return node;
  }

  function render(reports) {
    const p = reports.patients, a = reports.accounts, i = reports.invoices;
    document.getElementById('totals').replaceChildren(
      tile('patients', p.total), tile('active', p.active), tile('deceased', p.deceased),
      tile('accounts', a.total), tile('invoices', i.total));

    const invoicesByStatus = new Map();
    for (const row of i.byStatus) {
      const key = label(row.status);
      invoicesByStatus.set(key, (invoicesByStatus.get(key) || 0) + row.invoices);
    }
    const latestDays = p.registrationsPerDay.slice(-31);
    const amountRows = (list, keyOf, amountOf) => list.map((row) => ({
      key: keyOf(row), value: Number(amountOf(row)), text: money(amountOf(row), row.currency),
    }));

    document.getElementById('charts').replaceChildren(
      bars('patients-by-gender', 'Patients by gender', counted(p.byGender)),
      bars('patients-by-age-band', `Patients by age band (at ${reports.asOf})`, counted(p.byAgeBand)),
      bars('patients-by-country', 'Patients by country', counted(p.byCountry)),
      bars('patients-by-state', 'Patients by state', p.byState.map((row) => ({
        key: `${label(row.state)}, ${label(row.country)}`, value: row.count, text: String(row.count),
      }))),
      bars('patients-status', 'Patients: active and deceased', [
        { key: 'active', value: p.active, text: String(p.active) },
        { key: 'inactive', value: p.inactive, text: String(p.inactive) },
        { key: 'living', value: p.living, text: String(p.living) },
        { key: 'deceased', value: p.deceased, text: String(p.deceased) },
      ]),
      columns('registrations-per-month', 'New registrations per month',
        p.registrationsPerMonth.map((row) => ({ key: row.period, value: row.count, text: String(row.count) }))),
      columns('registrations-per-day', 'New registrations per day (latest 31 days with any)',
        latestDays.map((row) => ({ key: row.period, value: row.count, text: String(row.count) }))),
      bars('accounts-by-status', 'Accounts by status', counted(a.byStatus)),
      bars('accounts-by-type', 'Accounts by type', counted(a.byType)),
      bars('accounts-per-patient', 'Patients by number of accounts', a.perPatient.map((row) => ({
        key: `${row.accounts} ${row.accounts === 1 ? 'account' : 'accounts'}`, value: row.patients, text: String(row.patients),
      }))),
      bars('invoices-by-status', 'Invoices by status',
        [...invoicesByStatus].map(([key, count]) => ({ key, value: count, text: String(count) }))),
      bars('invoices-gross-by-month', 'Invoiced (totalGross) per month',
        amountRows(i.byMonth, (row) => `${label(row.month)} ${label(row.currency)}`, (row) => row.totalGross)),
      bars('invoices-by-currency', 'Invoiced (totalGross) per currency',
        amountRows(i.byCurrency, (row) => label(row.currency), (row) => row.totalGross)),
      bars('billed-per-patient', 'Billed most (issued and balanced invoices)',
        amountRows(i.billedPerPatient, (row) => `Patient/${row.patientId}`, (row) => row.billed)),
      bars('outstanding-per-account', 'Outstanding (issued invoices)',
        amountRows(i.outstandingPerAccount, (row) => `Account/${row.accountId}`, (row) => row.outstanding)),
    );
    document.getElementById('status').textContent = `Reports as of ${reports.asOf}`;
    document.body.dataset.state = 'ready';
  }

  async function load() {
    const headers = { Accept: 'application/json' };
    const token = new URLSearchParams(location.hash.slice(1)).get('access_token');
    if (token) headers.Authorization = 'Bearer ' + token;
    const response = await fetch('$analytics.json' + location.search, { headers, cache: 'no-store' });
    if (!response.ok) {
      let detail = '';
      try {
        const outcome = await response.json();
        detail = outcome.issue && outcome.issue[0] && outcome.issue[0].diagnostics ? ': ' + outcome.issue[0].diagnostics : '';
      } catch (_) { /* not an OperationOutcome */ }
      throw new Error(`the reports answered HTTP ${response.status}${detail}`);
    }
    return response.json();
  }

  function start() {
    load().then(render).catch((error) => {
      document.getElementById('status').textContent = `Cannot show the reports (${error.message}).`;
      document.body.dataset.state = 'error';
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
