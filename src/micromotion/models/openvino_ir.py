"""A reader for OpenVINO IR v10 (`.xml` graph + `.bin` constants), standard library and numpy only.

Follows the IR v10 layout documented by OpenVINO ("Intermediate Representation Syntax"): `<net version="10">`
holds `<layers>` (each `<layer id name type version>` with an optional `<data .../>` of attributes and
`<input>`/`<output>` ports with `<dim>`s) and `<edges>` (`from-layer from-port to-layer to-port`). A `Const`
layer's `<data element_type shape offset size>` points into the `.bin`. Nothing here runs the graph; it only
lets a converter read constants and follow edges (`micromotion.models.mobilestylegan_convert`).
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# IR element types -> numpy dtypes (little-endian, as the .bin stores them).
ELEMENT_TYPES: dict[str, np.dtype] = {
    "f64": np.dtype("<f8"), "f32": np.dtype("<f4"), "f16": np.dtype("<f2"),
    "i64": np.dtype("<i8"), "i32": np.dtype("<i4"), "i16": np.dtype("<i2"), "i8": np.dtype("i1"),
    "u64": np.dtype("<u8"), "u32": np.dtype("<u4"), "u16": np.dtype("<u2"), "u8": np.dtype("u1"),
    "boolean": np.dtype("?"),
}


@dataclass(frozen=True)
class Port:
    """One input or output port of a layer: `dims` as stored (-1 for a dynamic dimension)."""

    id: int
    dims: tuple[int, ...]
    precision: str = ""
    names: tuple[str, ...] = ()


@dataclass
class Layer:
    """One `<layer>`: its attributes (`data`) are kept as the XML strings."""

    id: int
    name: str
    type: str
    version: str
    data: dict[str, str] = field(default_factory=dict)
    inputs: list[Port] = field(default_factory=list)
    outputs: list[Port] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Layer(id={self.id}, name={self.name!r}, type={self.type!r})"


@dataclass(frozen=True)
class Edge:
    from_layer: int
    from_port: int
    to_layer: int
    to_port: int


def _shape(text: str) -> tuple[int, ...]:
    text = text.strip()
    return tuple(int(s) for s in text.split(",")) if text else ()


class IRGraph:
    """A parsed IR: `layers` by id, `edges`, and the constants of the `.bin`.

    `const(layer)` -> the constant's array; `producer(layer, port)` -> (layer, port) feeding that input;
    `consumers(layer, port)` -> [(layer, port)] reading that output; `inputs_of(layer)` -> producing layers in
    input-port order.
    """

    def __init__(self, name: str, version: int, layers: list[Layer], edges: list[Edge], weights: bytes,
                 source: str = "<memory>"):
        self.name, self.version, self.source = name, version, source
        self.layers: dict[int, Layer] = {}
        for layer in layers:
            if layer.id in self.layers:
                raise ValueError(f"{source}: duplicate layer id {layer.id}")
            self.layers[layer.id] = layer
        self.edges = list(edges)
        self._weights = weights
        self._producer: dict[tuple[int, int], tuple[int, int]] = {}
        self._consumers: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for e in self.edges:
            for lid in (e.from_layer, e.to_layer):
                if lid not in self.layers:
                    raise ValueError(f"{source}: edge {e} names layer {lid}, which does not exist")
            if (e.to_layer, e.to_port) in self._producer:
                raise ValueError(f"{source}: input port {e.to_port} of layer {e.to_layer} has two producers")
            self._producer[(e.to_layer, e.to_port)] = (e.from_layer, e.from_port)
            self._consumers.setdefault((e.from_layer, e.from_port), []).append((e.to_layer, e.to_port))
        self._by_name: dict[str, Layer] = {}
        for layer in self.layers.values():
            self._by_name.setdefault(layer.name, layer)

    def __repr__(self) -> str:
        return f"IRGraph({self.name!r}, v{self.version}, {len(self.layers)} layers, {len(self.edges)} edges)"

    def layer(self, key: int | str) -> Layer:
        """A layer by id or by name (the first one of that name)."""
        if isinstance(key, int):
            return self.layers[key]
        if key not in self._by_name:
            raise KeyError(f"{self.source}: no layer named {key!r}")
        return self._by_name[key]

    def of_type(self, type_: str) -> list[Layer]:
        return [layer for layer in self.layers.values() if layer.type == type_]

    def producer(self, layer: Layer | int, port: int) -> tuple[Layer, int]:
        lid = layer if isinstance(layer, int) else layer.id
        if (lid, port) not in self._producer:
            raise KeyError(f"{self.source}: input port {port} of layer {lid} is not connected")
        src, sport = self._producer[(lid, port)]
        return self.layers[src], sport

    def inputs_of(self, layer: Layer | int) -> list[Layer]:
        """The layers feeding `layer`, in the order of its input ports."""
        layer = self.layers[layer] if isinstance(layer, int) else layer
        return [self.producer(layer, p.id)[0] for p in layer.inputs]

    def consumers(self, layer: Layer | int, port: int | None = None) -> list[tuple[Layer, int]]:
        """(layer, input port) pairs reading output `port` of `layer` (its first output port when None)."""
        layer = self.layers[layer] if isinstance(layer, int) else layer
        if port is None:
            port = layer.outputs[0].id if layer.outputs else 0
        return [(self.layers[lid], p) for lid, p in self._consumers.get((layer.id, port), [])]

    def const(self, layer: Layer | int | str) -> np.ndarray:
        """The value of a `Const` layer: a fresh, writable array of its element type and shape."""
        layer = layer if isinstance(layer, Layer) else self.layer(layer)
        if layer.type != "Const":
            raise ValueError(f"{self.source}: layer {layer.name!r} is a {layer.type}, not a Const")
        d = layer.data
        etype = d.get("element_type", "")
        if etype not in ELEMENT_TYPES:
            raise ValueError(f"{self.source}: Const {layer.name!r} has unsupported element_type {etype!r}")
        dtype, shape = ELEMENT_TYPES[etype], _shape(d.get("shape", ""))
        offset, size = int(d["offset"]), int(d["size"])
        if size != math.prod(shape) * dtype.itemsize:
            raise ValueError(f"{self.source}: Const {layer.name!r}: size {size} does not fit shape {list(shape)} "
                             f"of {etype}")
        if offset < 0 or offset + size > len(self._weights):
            raise ValueError(f"{self.source}: Const {layer.name!r} reads bytes {offset}..{offset + size} of a "
                             f"{len(self._weights)}-byte .bin (truncated or not this model's .bin?)")
        return np.frombuffer(self._weights, dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape).copy()


def _ports(elem: ET.Element | None) -> list[Port]:
    if elem is None:
        return []
    out = []
    for p in elem.findall("port"):
        names = tuple(n.strip() for n in p.get("names", "").split(",") if n.strip())
        out.append(Port(int(p.get("id")), tuple(int(d.text) for d in p.findall("dim")), p.get("precision", ""),
                        names))
    return out


def parse_ir(xml_text: str | bytes, weights: bytes, source: str = "<memory>") -> IRGraph:
    """Parse IR v10 from the XML text and the `.bin` bytes."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as e:
        raise ValueError(f"{source}: not an XML file ({e})") from None
    if root.tag != "net":
        raise ValueError(f"{source}: not an OpenVINO IR (root element <{root.tag}>, expected <net>)")
    version = int(root.get("version", "0"))
    if version != 10:
        raise ValueError(f"{source}: IR version {version}; this reader reads IR v10")
    layers = []
    for el in root.iterfind("layers/layer"):
        data = el.find("data")
        layers.append(Layer(int(el.get("id")), el.get("name", ""), el.get("type", ""), el.get("version", ""),
                            dict(data.attrib) if data is not None else {}, _ports(el.find("input")),
                            _ports(el.find("output"))))
    edges = [Edge(int(e.get("from-layer")), int(e.get("from-port")), int(e.get("to-layer")), int(e.get("to-port")))
             for e in root.iterfind("edges/edge")]
    return IRGraph(root.get("name", ""), version, layers, edges, weights, source)


def read_ir(xml_path: str | Path, bin_path: str | Path | None = None) -> IRGraph:
    """Read `model.xml` and its constants (`model.bin` beside it unless `bin_path` is given)."""
    xml_path = Path(xml_path)
    bin_path = xml_path.with_suffix(".bin") if bin_path is None else Path(bin_path)
    return parse_ir(xml_path.read_bytes(), bin_path.read_bytes(), source=xml_path.name)
