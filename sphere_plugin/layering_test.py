"""The package's layering, checked on its import graph (grimp, import-linter's engine).

Layers, top to bottom (README, "Architecture"): each imports only the layers
below it, and `|` siblings never import each other. Every import counts,
function-level ones included, with one exception: `ds.sphere.predict`'s lazy
import of the weather slice. Test modules (`*_test`) may use any layer, and the
old import paths are re-exporting shims outside the layers: the test checks
that nothing inside the layers imports them. Within the layers there is no
import cycle between modules.
"""

from __future__ import annotations

import grimp

LAYERS = (
    ('sphere_plugin.cli',),
    ('sphere_plugin.weather', 'sphere_plugin.molecules', 'sphere_plugin.examples'),
    ('sphere_plugin.beam',),
    ('sphere_plugin.accessor', 'sphere_plugin.neuralgcm', 'sphere_plugin.scattering_cache'),
    ('sphere_plugin.train', 'sphere_plugin.testing'),
    ('sphere_plugin.nn', 'sphere_plugin.regrid'),
    ('sphere_plugin.sht',),
    ('sphere_plugin.grids',),
    ('sphere_plugin.healpix',),
    ('sphere_plugin.io',),
)
ALLOWED = {('sphere_plugin.accessor', 'sphere_plugin.weather.inference')}
# Old paths (before the layout of sphere_plugin/weather, molecules, examples, io,
# testing): shims that re-export the new modules, for old code and stored gin configs.
SHIMS = (
    'sphere_plugin.forecast', 'sphere_plugin.evaluation', 'sphere_plugin.plots',
    'sphere_plugin.atomic', 'sphere_plugin.allocator', 'sphere_plugin.stored_config',
    'sphere_plugin.safe_pickle', 'sphere_plugin.data', 'sphere_plugin.models',
    'sphere_plugin.train.forecast_task', 'sphere_plugin.train.qm9_task',
    'sphere_plugin.cli.errors', 'sphere_plugin.cli.interrupts', 'sphere_plugin.cli.writers',
    'sphere_plugin.cli.help', 'sphere_plugin.nn.equivariance',
)
ROOT = 'sphere_plugin'


def _graph() -> grimp.ImportGraph:
  graph = grimp.build_graph(ROOT, include_external_packages=False)
  for module in sorted(graph.modules):
    if module.rsplit('.', 1)[-1].endswith('_test'):
      graph.remove_module(module)
  for importer, imported in ALLOWED:
    graph.remove_import(importer=importer, imported=imported)
  return graph


def _shim_modules(graph) -> set[str]:
  out = set()
  for shim in SHIMS:
    out |= {shim} | graph.find_descendants(shim) if shim in graph.modules else set()
  return out


def test_every_module_is_in_a_layer_or_a_shim():
  graph = _graph()
  shims = _shim_modules(graph)
  layered = {m for layer in LAYERS for m in layer}
  stray = sorted(m for m in graph.modules - shims - {ROOT}
                 if not any(m == p or m.startswith(p + '.') for p in layered))
  assert not stray, f'modules outside the layers (add them to LAYERS and the README): {stray}'


def test_layers_import_only_downwards():
  graph = _graph()
  for shim in _shim_modules(graph):
    graph.remove_module(shim)
  layers = [grimp.Layer(*layer, independent=True) for layer in LAYERS]
  illegal = graph.find_illegal_dependencies_for_layers(layers=layers)
  lines = []
  for dep in sorted(illegal, key=lambda d: (d.importer, d.imported)):
    for route in dep.routes:
      chain = (*route.heads, *route.middle, *route.tails)
      lines.append(f'{dep.importer} -> {dep.imported}: {sorted(chain)}')
  assert not lines, 'imports against the layering:\n' + '\n'.join(lines)


def test_nothing_in_the_layers_imports_an_old_path():
  graph = _graph()
  shims = _shim_modules(graph)
  users = sorted((importer, shim) for shim in shims
                 for importer in graph.find_modules_that_directly_import(shim)
                 if importer not in shims)
  assert not users, f'modules importing old paths (import the new homes): {users}'


def _cycles(graph) -> list[list[str]]:
  """Strongly connected components of more than one module (Tarjan, iterative)."""
  index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
  for root in sorted(graph.modules):
    if root in index:
      continue
    work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
    index[root] = low[root] = counter[0]; counter[0] += 1
    stack.append(root); on_stack.add(root)
    while work:
      node, children = work[-1]
      child = next(children, None)
      if child is not None:
        if child not in index:
          index[child] = low[child] = counter[0]; counter[0] += 1
          stack.append(child); on_stack.add(child)
          work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
        elif child in on_stack:
          low[node] = min(low[node], index[child])
        continue
      work.pop()
      if work:
        low[work[-1][0]] = min(low[work[-1][0]], low[node])
      if low[node] == index[node]:
        scc = []
        while True:
          m = stack.pop(); on_stack.discard(m); scc.append(m)
          if m == node:
            break
        if len(scc) > 1:
          out.append(sorted(scc))
  return out


def test_no_import_cycles():
  graph = _graph()
  for shim in _shim_modules(graph):
    graph.remove_module(shim)
  # A package's __init__ re-exporting its children is not a cycle of concepts.
  for module in sorted(graph.modules):
    for child in graph.find_children(module):
      if graph.direct_import_exists(importer=module, imported=child):
        graph.remove_import(importer=module, imported=child)
  assert not _cycles(graph), _cycles(graph)


def test_the_cycle_finder_finds_a_cycle():
  graph = grimp.ImportGraph()
  for m in ('p', 'p.a', 'p.b', 'p.c'):
    graph.add_module(m)
  graph.add_import(importer='p.a', imported='p.b')
  graph.add_import(importer='p.b', imported='p.a')
  graph.add_import(importer='p.c', imported='p.a')
  assert _cycles(graph) == [['p.a', 'p.b']]


def test_no_test_module_imports_another():
  graph = grimp.build_graph(ROOT, include_external_packages=False)
  tests = {m for m in graph.modules if m.rsplit('.', 1)[-1].endswith('_test')}
  pairs = sorted((t, u) for t in tests for u in graph.find_modules_directly_imported_by(t)
                 if u in tests)
  assert not pairs, f'shared test helpers belong in sphere_plugin.testing: {pairs}'


def test_the_layer_check_finds_an_upward_import():
  graph = grimp.ImportGraph()
  for m in ('p', 'p.high', 'p.low'):
    graph.add_module(m)
  graph.add_import(importer='p.low', imported='p.high')
  layers = [grimp.Layer('p.high', independent=True), grimp.Layer('p.low', independent=True)]
  assert graph.find_illegal_dependencies_for_layers(layers=layers)


def _shim_targets() -> list[tuple[str, str]]:
  """(old path, new module) for every shim that re-exports one module with `import *`."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  out = []
  for shim in SHIMS:
    spec = importlib.util.find_spec(shim)
    paths = [spec.origin] if spec.origin.endswith('.py') else []
    if spec.submodule_search_locations:
      import pathlib  # pylint: disable=g-import-not-at-top
      paths = [str(p) for p in pathlib.Path(spec.submodule_search_locations[0]).glob('*.py')
               if p.name != '__init__.py']
    for path in paths:
      text = open(path, encoding='utf-8').read()
      m = re.search(r'^from (sphere_plugin[\w.]*) import \*', text, re.M)
      if m:
        name = shim if path == spec.origin else f'{shim}.{path.rsplit("/", 1)[1][:-3]}'
        out.append((name, m.group(1)))
  return out


def test_old_paths_re_export_their_new_homes():
  import importlib  # pylint: disable=g-import-not-at-top
  pairs = _shim_targets()
  assert len(pairs) >= 20, pairs
  for old, new in pairs:
    shim, target = importlib.import_module(old), importlib.import_module(new)
    names = getattr(target, '__all__', None) or [n for n in vars(target) if not n.startswith('_')]
    missing = [n for n in names if getattr(shim, n, None) is not getattr(target, n)]
    assert not missing, f'{old} lacks {missing} of {new}'
