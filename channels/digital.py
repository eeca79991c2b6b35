"""Conventional digital chain: quantiser -> [CRC] -> 5G LDPC -> QAM -> channel -> demapper -> LDPC -> bits.

The chain runs through any channel of the :class:`channels.flat.FlatChannel` contract
(``forward(x [batch, num_users, num_symbols] complex64, no, stream) -> ChannelOutput``) and
demaps the channel's unbiased equalised symbols ``x_hat`` with their noise variance ``no_eff``.
Conventions (:mod:`channels.conventions`): ``Es = 1`` per complex symbol, SNR = ``Es/N0`` in dB
at the API, one channel use = one complex symbol.

Pieces:

- :class:`UniformQuantizer`: real vectors <-> bits (``bits_per_real`` bits, clipping range).
- :class:`~channels.link_adaptation.MCS`: the modulation and code rate, from the 38.214 tables of
  :mod:`channels.link_adaptation` (which also picks the MCS for an SNR).
- :class:`DigitalChain`: segmentation into code blocks (with CRC-24B each), 5G LDPC, Gray QAM,
  bit-level transmission (:meth:`DigitalChain.transmit`), byte strings
  (:meth:`DigitalChain.send_bytes`), and a fast PHY-abstraction mode
  (:meth:`DigitalChain.transmit_abstract`) that draws code-block errors from the BLER tables.

Sionna is imported lazily (``import sionna.phy`` costs ~4 s).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from channels.conventions import snr_db_to_no
from channels.link_adaptation import (CRC_BITS, DEFAULT_CODE_BLOCK_BITS, MAX_CODE_RATE, MIN_CODE_RATE, MCS, code_block_bler,
                                      effective_sinr)
from channels.theory import bits_per_symbol

__all__ = ["UniformQuantizer", "Segmentation", "LinkResult", "AbstractionResult", "ReceivedBytes", "DigitalChain",
           "bytes_to_bits", "bits_to_bytes"]

logger = logging.getLogger(__name__)

_MIN_NO_EFF = 1e-10  # keeps LLRs finite on a noiseless channel


# --------------------------------------------------------------------------------------------- #
# Quantiser                                                                                     #
# --------------------------------------------------------------------------------------------- #
class UniformQuantizer:
    """Uniform scalar quantiser for real vectors: ``2^bits_per_real`` levels on ``[clip_min, clip_max]``.

    Levels sit at ``clip_min + i * step`` with ``step = (clip_max - clip_min) / (2^b - 1)``, so
    both range ends are levels and the round-trip error is ``<= step / 2`` inside the range
    (values outside are clipped first). Codes are sent as ``bits_per_real`` bits, MSB first.

    Args:
        bits_per_real: bits per real number, 1..24.
        clip_min, clip_max: clipping range (same unit as the data), ``clip_min < clip_max``.
    """

    def __init__(self, bits_per_real: int = 8, clip_min: float = -4.0, clip_max: float = 4.0):
        if not isinstance(bits_per_real, int) or isinstance(bits_per_real, bool) or not 1 <= bits_per_real <= 24:
            raise ValueError(f"bits_per_real must be an int in 1..24, got {bits_per_real!r}")
        if not (math.isfinite(clip_min) and math.isfinite(clip_max) and clip_min < clip_max):
            raise ValueError(f"clip range must be finite with clip_min < clip_max, got [{clip_min}, {clip_max}]")
        self.bits_per_real = bits_per_real
        self.clip_min = float(clip_min)
        self.clip_max = float(clip_max)
        self.num_levels = 2**bits_per_real
        self.step = (self.clip_max - self.clip_min) / (self.num_levels - 1)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Real ``[...]`` float -> level index ``[...]`` int64 in ``[0, 2^b - 1]``."""
        clipped = x.detach().to(torch.float64).clamp(self.clip_min, self.clip_max)
        return torch.round((clipped - self.clip_min) / self.step).to(torch.int64)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """Level index ``[...]`` int -> reconstruction ``[...]`` float32."""
        return (self.clip_min + codes.to(torch.float64) * self.step).to(torch.float32)

    def to_bits(self, x: torch.Tensor) -> torch.Tensor:
        """Real ``[..., n]`` -> bits ``[..., n * bits_per_real]`` float32 in {0, 1} (MSB first)."""
        codes = self.quantize(x)
        shifts = torch.arange(self.bits_per_real - 1, -1, -1, device=codes.device)
        bits = (codes.unsqueeze(-1) >> shifts) & 1
        return bits.reshape(*x.shape[:-1], x.shape[-1] * self.bits_per_real).to(torch.float32)

    def from_bits(self, bits: torch.Tensor) -> torch.Tensor:
        """Bits ``[..., n * bits_per_real]`` -> reconstruction ``[..., n]`` float32."""
        if bits.shape[-1] % self.bits_per_real:
            raise ValueError(f"number of bits {bits.shape[-1]} is not a multiple of bits_per_real={self.bits_per_real}")
        grouped = bits.reshape(*bits.shape[:-1], -1, self.bits_per_real).to(torch.int64)
        weights = 2 ** torch.arange(self.bits_per_real - 1, -1, -1, device=bits.device)
        return self.dequantize((grouped * weights).sum(-1))

    def round_trip(self, x: torch.Tensor) -> torch.Tensor:
        """``dequantize(quantize(x))``: what an error-free link delivers, float32."""
        return self.dequantize(self.quantize(x))


def bytes_to_bits(data: bytes) -> torch.Tensor:
    """Byte string -> ``[8 * len(data)]`` float32 bits, MSB first."""
    array = np.unpackbits(np.frombuffer(bytes(data), dtype=np.uint8))
    return torch.from_numpy(array.astype(np.float32))


def bits_to_bytes(bits: torch.Tensor) -> bytes:
    """``[8 * n]`` bits (any float/int dtype, values 0/1) -> byte string (MSB first)."""
    if bits.dim() != 1 or bits.shape[0] % 8:
        raise ValueError(f"bits must be 1-D with a length that is a multiple of 8, got shape {tuple(bits.shape)}")
    return np.packbits(bits.detach().cpu().numpy().astype(np.uint8)).tobytes()


# --------------------------------------------------------------------------------------------- #
# Chain                                                                                         #
# --------------------------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Segmentation:
    """How a payload of ``num_payload_bits`` is cut into code blocks and mapped to symbols.

    Attributes:
        num_payload_bits: information bits handed to the chain.
        num_codewords: code blocks (C).
        payload_bits_per_codeword: payload bits per code block (the last ones zero-padded).
        info_bits_per_codeword: LDPC information bits K = payload + CRC per code block.
        coded_bits_per_codeword: N bits sent per code block (a multiple of the modulation order).
        num_coded_bits: ``C * N``, the bits actually sent.
        num_symbols: complex symbols (channel uses), ``C * N / modulation_order``.
        padding_bits: zero bits added to fill the last code block.
    """

    num_payload_bits: int
    num_codewords: int
    payload_bits_per_codeword: int
    info_bits_per_codeword: int
    coded_bits_per_codeword: int
    num_coded_bits: int
    num_symbols: int
    padding_bits: int


@dataclass
class LinkResult:
    """Outcome of a bit-level transmission, per user.

    Attributes:
        bits_hat: ``[batch, num_users, num_payload_bits]`` float32 decoded payload bits.
        block_errors: ``[batch, num_users, num_codewords]`` bool, True where the decoded
            payload of a code block differs from what was sent (genie comparison).
        crc_ok: ``[batch, num_users, num_codewords]`` bool CRC check, or ``None`` without CRC.
        num_bit_errors: ``[batch, num_users]`` int64 payload bit errors.
        segmentation: accounting (coded bits sent, symbols used).
    """

    bits_hat: torch.Tensor
    block_errors: torch.Tensor
    crc_ok: torch.Tensor | None
    num_bit_errors: torch.Tensor
    segmentation: Segmentation


@dataclass
class AbstractionResult:
    """Outcome of :meth:`DigitalChain.transmit_abstract`, per code block.

    Attributes:
        block_errors: ``[batch, num_users, num_codewords]`` bool, drawn with probability ``bler``.
        bler: ``[batch, num_users, num_codewords]`` float32 table BLER at the effective SINR.
        sinr_eff_db: ``[batch, num_users, num_codewords]`` float32 effective SINR (dB).
        segmentation: accounting (coded bits sent, symbols used).
    """

    block_errors: torch.Tensor
    bler: torch.Tensor
    sinr_eff_db: torch.Tensor
    segmentation: Segmentation


@dataclass
class ReceivedBytes:
    """One user's copy of a byte string sent by :meth:`DigitalChain.send_bytes`.

    Attributes:
        data: decoded bytes (same length as sent; corrupted where a code block failed).
        codeword_ok: per code block, True if it decoded (CRC passes when the chain has a CRC,
            else the genie comparison).
        ok: all code blocks decoded.
    """

    data: bytes
    codeword_ok: list[bool]

    @property
    def ok(self) -> bool:
        return all(self.codeword_ok)


@lru_cache(maxsize=64)
def _ldpc(k: int, n: int, modulation_order: int, decoder_iterations: int, cn_update: str, device: str):
    from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder

    encoder = LDPC5GEncoder(k, n, num_bits_per_symbol=modulation_order, device=device)
    decoder = LDPC5GDecoder(encoder, cn_update=cn_update, num_iter=decoder_iterations,
                            hard_out=True, return_infobits=True, device=device)
    return encoder, decoder


@lru_cache(maxsize=16)
def _qam(modulation_order: int, demapping: str, device: str):
    from sionna.phy.mapping import Demapper, Mapper

    return Mapper("qam", modulation_order, device=device), Demapper(demapping, "qam", modulation_order, device=device)


@lru_cache(maxsize=4)
def _crc(device: str):
    from sionna.phy.fec.crc import CRCDecoder, CRCEncoder

    encoder = CRCEncoder("CRC24B", device=device)
    return encoder, CRCDecoder(encoder, device=device)


class DigitalChain:
    """Bits -> [CRC-24B per code block] -> 5G LDPC -> Gray QAM -> channel -> APP demapper -> LDPC -> bits.

    A payload of ``B`` bits is cut into ``C = ceil(B / (max_code_block_bits - crc))`` code blocks
    of equal size (zero-padded), each LDPC-encoded to ``N = ceil(K / r / m) * m`` bits so that a
    code block fills whole symbols. Uncoded mode (``code_rate=None``) sends the same blocks
    without LDPC and decides on the sign of max-log LLRs, which is nearest-symbol detection
    followed by Gray demapping (the detector the closed forms of :mod:`channels.theory`
    assume; the bit-wise APP decision has a slightly lower BER at low SNR). Coded mode uses
    exact APP LLRs.

    Args:
        modulation: ``"qpsk"``, ``"qam16"``, ``"qam64"`` or bits per symbol (2, 4, 6, 8).
        code_rate: LDPC rate in [0.2, 0.95], or ``None`` for uncoded.
        crc: attach a CRC-24B to each code block (gives a receiver-side decoded flag).
        max_code_block_bits: largest K (LDPC information bits incl. CRC), 12..8448.
        decoder_iterations: belief-propagation iterations.
        cn_update: Sionna check-node rule (``"boxplus-phi"``, ``"offset-minsum"``, ...).
        mcs: the table MCS this chain implements (set by :meth:`from_mcs`; the PHY abstraction
            mode needs it).
    """

    def __init__(self, modulation: str | int = "qpsk", code_rate: float | None = 0.5, *, crc: bool = True,
                 max_code_block_bits: int = DEFAULT_CODE_BLOCK_BITS, decoder_iterations: int = 20,
                 cn_update: str = "boxplus-phi", mcs: MCS | None = None):
        self.modulation_order = bits_per_symbol(modulation)
        if self.modulation_order > 10:
            raise ValueError(f"modulation order must be <= 10 bits per symbol, got {self.modulation_order}")
        if code_rate is not None and not MIN_CODE_RATE <= code_rate <= MAX_CODE_RATE:
            raise ValueError(f"code_rate must be in [{MIN_CODE_RATE}, {MAX_CODE_RATE}] (5G LDPC) or None, "
                             f"got {code_rate!r}")
        min_block = 12 + (CRC_BITS if crc else 0)
        if not isinstance(max_code_block_bits, int) or not min_block < max_code_block_bits <= 8448:
            raise ValueError(f"max_code_block_bits must be an int in {min_block + 1}..8448, "
                             f"got {max_code_block_bits!r}")
        if decoder_iterations < 1:
            raise ValueError(f"decoder_iterations must be >= 1, got {decoder_iterations!r}")
        self.code_rate = None if code_rate is None else float(code_rate)
        self.crc = bool(crc)
        self.max_code_block_bits = max_code_block_bits
        self.decoder_iterations = int(decoder_iterations)
        self.cn_update = cn_update
        self.mcs = mcs if mcs is not None else MCS(None, self.modulation_order, self.code_rate)
        self.demapping = "app" if self.coded else "maxlog"

    @classmethod
    def from_mcs(cls, mcs: MCS, **kwargs) -> DigitalChain:
        """Chain for a table :class:`MCS` (``kwargs`` as in the constructor)."""
        return cls(mcs.modulation_order, mcs.code_rate, mcs=mcs, **kwargs)

    @property
    def coded(self) -> bool:
        return self.code_rate is not None

    @property
    def crc_bits(self) -> int:
        return CRC_BITS if self.crc else 0

    # ----------------------------------------------------------------------------------------- #
    def plan(self, num_payload_bits: int) -> Segmentation:
        """Code-block segmentation and symbol count for a payload, without transmitting."""
        if not isinstance(num_payload_bits, (int, np.integer)) or num_payload_bits < 1:
            raise ValueError(f"num_payload_bits must be a positive int, got {num_payload_bits!r}")
        num_payload_bits = int(num_payload_bits)
        per_block_max = self.max_code_block_bits - self.crc_bits
        num_codewords = math.ceil(num_payload_bits / per_block_max)
        payload_per_block = math.ceil(num_payload_bits / num_codewords)
        # LDPC5GEncoder needs K >= 12: pad tiny payloads.
        payload_per_block = max(payload_per_block, 12 - self.crc_bits)
        k = payload_per_block + self.crc_bits
        m = self.modulation_order
        rate = 1.0 if self.code_rate is None else self.code_rate
        n = math.ceil(k / rate / m) * m
        if self.code_rate is not None and k / n > MAX_CODE_RATE:  # rounding cannot raise the rate, but be safe
            n += m
        return Segmentation(
            num_payload_bits=num_payload_bits,
            num_codewords=num_codewords,
            payload_bits_per_codeword=payload_per_block,
            info_bits_per_codeword=k,
            coded_bits_per_codeword=n,
            num_coded_bits=num_codewords * n,
            num_symbols=num_codewords * n // m,
            padding_bits=num_codewords * payload_per_block - num_payload_bits,
        )

    def num_symbols(self, num_payload_bits: int) -> int:
        """Complex symbols (channel uses) needed for ``num_payload_bits``."""
        return self.plan(num_payload_bits).num_symbols

    def _blocks(self, bits: torch.Tensor, seg: Segmentation) -> torch.Tensor:
        """``[..., B]`` -> zero-padded ``[..., C, payload_per_block]``."""
        padded = torch.nn.functional.pad(bits, (0, seg.padding_bits))
        return padded.reshape(*bits.shape[:-1], seg.num_codewords, seg.payload_bits_per_codeword)

    def encode(self, bits: torch.Tensor) -> tuple[torch.Tensor, Segmentation]:
        """Payload bits ``[..., B]`` float32 {0,1} -> symbols ``[..., S]`` complex64 (Es = 1)."""
        if bits.dim() < 1 or bits.shape[-1] < 1:
            raise ValueError(f"bits must have a non-empty last dimension, got shape {tuple(bits.shape)}")
        seg = self.plan(bits.shape[-1])
        device = str(bits.device)
        blocks = self._blocks(bits.to(torch.float32), seg)
        if self.crc:
            blocks = _crc(device)[0](blocks)
        if self.coded:
            encoder, _ = _ldpc(seg.info_bits_per_codeword, seg.coded_bits_per_codeword, self.modulation_order,
                               self.decoder_iterations, self.cn_update, device)
            codewords = encoder(blocks)
        else:
            codewords = torch.nn.functional.pad(blocks, (0, seg.coded_bits_per_codeword - seg.info_bits_per_codeword))
        mapper, _ = _qam(self.modulation_order, self.demapping, device)
        symbols = mapper(codewords.reshape(*bits.shape[:-1], seg.num_coded_bits))
        return symbols.to(torch.complex64), seg

    def decode(self, x_hat: torch.Tensor, no_eff: torch.Tensor, seg: Segmentation
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Equalised symbols -> payload bits.

        Args:
            x_hat: ``[..., S]`` complex64 unbiased equalised symbols.
            no_eff: ``[..., S]`` float32 noise variance of ``x_hat`` (linear).
            seg: the :class:`Segmentation` used to encode.

        Returns:
            ``(bits_hat [..., B] float32, crc_ok [..., C] bool or None)``.
        """
        device = str(x_hat.device)
        _, demapper = _qam(self.modulation_order, self.demapping, device)
        llr = demapper(x_hat, no_eff.clamp(min=_MIN_NO_EFF))
        llr = llr.reshape(*x_hat.shape[:-1], seg.num_codewords, seg.coded_bits_per_codeword)
        if self.coded:
            _, decoder = _ldpc(seg.info_bits_per_codeword, seg.coded_bits_per_codeword, self.modulation_order,
                               self.decoder_iterations, self.cn_update, device)
            blocks = decoder(llr)
        else:
            blocks = (llr[..., : seg.info_bits_per_codeword] > 0).to(torch.float32)
        crc_ok = None
        if self.crc:
            blocks, crc_valid = _crc(device)[1](blocks)
            crc_ok = crc_valid.squeeze(-1)
        payload = blocks.reshape(*blocks.shape[:-2], -1)[..., : seg.num_payload_bits]
        return payload, crc_ok

    # ----------------------------------------------------------------------------------------- #
    @staticmethod
    def _check_channel(channel) -> None:
        if getattr(channel, "equalizer", None) == "mmse":
            raise ValueError("channel equalizer must be unbiased ('zf') for demapping; got equalizer='mmse'")

    def transmit(self, bits: torch.Tensor, channel, snr_db, stream=None) -> LinkResult:
        """Bit-level transmission through ``channel``.

        Args:
            bits: ``[batch, num_users, B]`` float32 {0, 1}; for a broadcast give every user the
                same row (``channels.flat.broadcast``).
            channel: a channel of the contract (e.g. ``AWGNChannel()``), with an unbiased equaliser.
            snr_db: ``Es/N0`` in dB: float, ``[num_users]`` or ``[batch, num_users]``.
            stream: random stream(s) for the channel (:mod:`channels.randomness`).
        """
        if bits.dim() != 3:
            raise ValueError(f"bits must be [batch, num_users, num_bits], got shape {tuple(bits.shape)}")
        self._check_channel(channel)
        symbols, seg = self.encode(bits)
        out = channel(symbols, snr_db_to_no(snr_db).to(symbols.device), stream)
        bits_hat, crc_ok = self.decode(out.x_hat, out.no_eff, seg)
        wrong = bits_hat != bits.to(torch.float32)
        block_errors = self._blocks(wrong.to(torch.float32), seg).sum(-1) > 0
        return LinkResult(bits_hat=bits_hat, block_errors=block_errors, crc_ok=crc_ok,
                          num_bit_errors=wrong.sum(-1), segmentation=seg)

    def send_bytes(self, data: bytes, channel, snr_db, num_users: int = 1, stream=None) -> list[ReceivedBytes]:
        """Broadcast a byte string to ``num_users`` users; each user's decoded copy and flags.

        ``snr_db`` as in :meth:`transmit`. ``codeword_ok`` comes from the CRC when the chain
        has one, else from comparing with what was sent.
        """
        if not isinstance(data, (bytes, bytearray)) or len(data) == 0:
            raise ValueError("data must be a non-empty bytes object")
        bits = bytes_to_bits(data).reshape(1, 1, -1).expand(1, num_users, -1).contiguous()
        result = self.transmit(bits, channel, snr_db, stream)
        flags = result.crc_ok if result.crc_ok is not None else ~result.block_errors
        return [ReceivedBytes(data=bits_to_bytes(result.bits_hat[0, user]),
                              codeword_ok=[bool(v) for v in flags[0, user].tolist()])
                for user in range(num_users)]

    def transmit_abstract(self, num_payload_bits: int, channel, snr_db, batch_size: int = 1, num_users: int = 1,
                          stream=None, generator: torch.Generator | None = None) -> AbstractionResult:
        """PHY abstraction: draw code-block errors from Sionna's BLER tables instead of decoding.

        The channel is run on unit symbols to get the per-symbol post-equalisation SINR
        ``1 / no_eff`` (Es = 1). Per code block, the effective SINR is the EESM average
        (``sionna.sys.EESM``, beta of this MCS) over the block's symbols: for AWGN and block
        fading that is constant over a block this is exactly the per-block SNR. The block error
        probability is ``PHYAbstraction.get_bler`` (PDSCH, this MCS, K = code block size) at that
        SINR; errors are Bernoulli draws from ``generator``.

        Returns:
            :class:`AbstractionResult` with ``[batch_size, num_users, num_codewords]`` tensors.
        """
        if self.mcs.index is None or not self.coded:
            raise ValueError("PHY abstraction needs a table MCS: build the chain with DigitalChain.from_mcs")
        self._check_channel(channel)
        seg = self.plan(num_payload_bits)
        ones = torch.ones(batch_size, num_users, seg.num_symbols, dtype=torch.complex64)
        out = channel(ones, snr_db_to_no(snr_db), stream)
        sinr = 1.0 / out.no_eff.detach().to("cpu", torch.float32).clamp(min=_MIN_NO_EFF)
        per_block = sinr.reshape(-1, seg.num_codewords, seg.coded_bits_per_codeword // self.modulation_order)
        sinr_eff = effective_sinr(self.mcs, per_block.reshape(-1, per_block.shape[-1]))
        bler = code_block_bler(self.mcs, sinr_eff, seg.info_bits_per_codeword)
        bler = bler.reshape(batch_size, num_users, seg.num_codewords).to(torch.float32)
        draws = torch.rand(bler.shape, generator=generator)
        sinr_eff_db = (10.0 * torch.log10(sinr_eff)).reshape(bler.shape).to(torch.float32)
        return AbstractionResult(block_errors=draws < bler, bler=bler, sinr_eff_db=sinr_eff_db, segmentation=seg)
